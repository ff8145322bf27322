"""Customers: PUT/GET /customers/{id}, GET /customers, and the invoice preview."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from meterd.aggregation import calendars_for, ops_for
from meterd.config.model import SystemConfig
from meterd.customers import customer_out, is_customer_id, parse_customer, put_customer
from meterd.errors import InvalidRequest, NotFound
from meterd.http.body import read_body
from meterd.http.events import page
from meterd.http.params import decode_cursor, limit_param
from meterd.http.responses import JSONResponse
from meterd.preview import invoice_preview
from meterd.storage.base import Store
from meterd.timeutil import now_ms

MAX_CUSTOMER_BODY = 64 * 1024


def customer_routes(config: SystemConfig, store: Store) -> list[Route]:
    calendars = calendars_for(config)
    ops = ops_for(config)

    async def put(request: Request) -> Response:
        body = await read_body(
            request.receive, request.headers.get("content-length", "").encode(), MAX_CUSTOMER_BODY
        )
        now = now_ms()
        record, created = await put_customer(
            store,
            customer_id=request.path_params["id"],
            given=parse_customer(body, config),
            config=config,
            calendars=calendars,
            now_ms=now,
        )
        return JSONResponse(customer_out(record, now_ms=now), status_code=201 if created else 200)

    async def get(request: Request) -> Response:
        customer_id = request.path_params["id"]
        record = await store.get_customer(customer_id) if is_customer_id(customer_id) else None
        if record is None:
            raise NotFound(f"no customer {customer_id!r}")
        return JSONResponse(customer_out(record, now_ms=now_ms()))

    async def list_customers(request: Request) -> Response:
        params = request.query_params
        cursor = decode_cursor(params)
        limit = limit_param(params)
        if cursor is not None and (len(cursor) != 1 or not is_customer_id(cursor[0])):
            raise InvalidRequest("cursor: not a cursor returned by this API", field="cursor")
        records = await store.list_customers(limit=limit, after_id=cursor[0] if cursor else None)
        now = now_ms()
        return page(records, limit, lambda r: customer_out(r, now_ms=now), lambda r: (r.id,))

    async def preview(request: Request) -> Response:
        if not is_customer_id(request.path_params["id"]):
            raise NotFound("no such customer")
        result = await invoice_preview(
            store,
            customer_id=request.path_params["id"],
            config=config,
            calendars=calendars,
            ops=ops,
            now_ms=now_ms(),
        )
        return JSONResponse(result)

    return [
        Route("/customers", list_customers, methods=["GET"]),
        Route("/customers/{id:path}/invoice-preview", preview, methods=["GET"]),
        Route("/customers/{id:path}", get, methods=["GET"]),
        Route("/customers/{id:path}", put, methods=["PUT"]),
    ]
