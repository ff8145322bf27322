"""Invoices: GET /invoices, GET /invoices/{id}, POST /invoices/{id}/resend."""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from meterd.billing import get_invoice, invoice_status, list_invoices, resend_invoice
from meterd.customers import is_customer_id
from meterd.errors import InvalidRequest
from meterd.http.events import page
from meterd.http.params import decode_cursor, is_integer, limit_param
from meterd.http.responses import JSONResponse
from meterd.invoices import invoice_out
from meterd.storage.base import InvoiceQuery, Store
from meterd.timeutil import now_ms


def invoice_routes(
    store: Store, *, provider: str | None, on_resend: Callable[[], None] = lambda: None
) -> list[Route]:
    async def list_all(request: Request) -> Response:
        params = request.query_params
        cursor = decode_cursor(params)
        if cursor is not None and (len(cursor) != 2 or not is_integer(cursor[0])):
            raise InvalidRequest("cursor: not a cursor returned by this API", field="cursor")
        customer_id = params.get("customerId") or None
        if customer_id is not None and not is_customer_id(customer_id):
            raise InvalidRequest("customerId: not a customer id", field="customerId")
        query = InvoiceQuery(
            customer_id=customer_id,
            status=invoice_status(params.get("status")),
            limit=limit_param(params),
            before=(int(cursor[0]), cursor[1]) if cursor else None,
        )
        invoices = await list_invoices(store, query)
        return page(invoices, query.limit, invoice_out, lambda i: (i.period_start, i.id))

    async def get_one(request: Request) -> Response:
        return JSONResponse(invoice_out(await get_invoice(store, request.path_params["id"])))

    async def resend(request: Request) -> Response:
        invoice = await resend_invoice(
            store, request.path_params["id"], provider=provider, now_ms=now_ms()
        )
        on_resend()
        return JSONResponse(invoice_out(invoice), status_code=202)

    return [
        Route("/invoices", list_all, methods=["GET"]),
        Route("/invoices/{id}", get_one, methods=["GET"]),
        Route("/invoices/{id}/resend", resend, methods=["POST"]),
    ]
