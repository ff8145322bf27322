"""Webhook deliveries: listing, one delivery with its attempts, redelivery."""

from __future__ import annotations

from collections.abc import Callable
from typing import get_args

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from meterd.config.redact import redact_url
from meterd.errors import InvalidRequest, NotFound
from meterd.http.events import page
from meterd.http.params import int_cursor, is_integer, limit_param
from meterd.http.responses import JSONResponse
from meterd.storage.base import AttemptRecord, DeliveryRecord, DeliveryStatus, Store
from meterd.timeutil import format_ms, now_ms

STATUSES: tuple[str, ...] = get_args(DeliveryStatus)


class AttemptOut(msgspec.Struct, rename="camel"):
    attempted_at: str
    status_code: int | None
    latency_ms: int
    response: str | None
    error: str | None


class DeliveryOut(msgspec.Struct, rename="camel", omit_defaults=True):
    """A webhook delivery; `webhookId` is the Standard Webhooks id, stable across retries."""

    id: int
    webhook_id: str
    aggregation_id: str
    url: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: str | None
    delivered_at: str | None
    dry_run: bool
    last_error: str | None
    created_at: str
    updated_at: str
    payload: msgspec.Raw | None = None
    attempt_log: list[AttemptOut] | None = None


def _time(ms: int | None) -> str | None:
    return None if ms is None else format_ms(ms)


def delivery_out(
    record: DeliveryRecord, attempts: list[AttemptRecord] | None = None
) -> DeliveryOut:
    return DeliveryOut(
        id=record.id,
        webhook_id=record.message_id,
        aggregation_id=record.aggregation_id,
        url=redact_url(record.url),
        status=record.status,
        attempts=record.attempts,
        next_attempt_at=_time(record.next_attempt_ms) if record.status == "pending" else None,
        delivered_at=_time(record.delivered_ms),
        dry_run=record.dry_run,
        last_error=record.last_error,
        created_at=format_ms(record.created_ms),
        updated_at=format_ms(record.updated_ms),
        payload=None if attempts is None else msgspec.Raw(record.payload),
        attempt_log=None
        if attempts is None
        else [
            AttemptOut(format_ms(a.attempted_ms), a.status_code, a.latency_ms, a.response, a.error)
            for a in attempts
        ],
    )


def delivery_routes(store: Store, *, on_redeliver: Callable[[], None]) -> list[Route]:
    async def list_deliveries(request: Request) -> Response:
        params = request.query_params
        status = params.get("status") or None
        if status is not None and status not in STATUSES:
            raise InvalidRequest(f"status: must be one of {', '.join(STATUSES)}", field="status")
        cursor = int_cursor(params, 1)
        limit = limit_param(params)
        records = await store.list_deliveries(
            status=status,  # type: ignore[arg-type]
            limit=limit,
            before_id=cursor[0] if cursor else None,
        )
        return page(records, limit, delivery_out, lambda record: (record.id,))

    async def get_delivery(request: Request) -> Response:
        found = await store.get_delivery(_delivery_id(request))
        if found is None:
            raise NotFound("no such delivery")
        return JSONResponse(delivery_out(*found))

    async def redeliver(request: Request) -> Response:
        record = await store.redeliver(_delivery_id(request), now_ms=now_ms())
        if record is None:
            raise NotFound("no such delivery")
        on_redeliver()
        return JSONResponse(delivery_out(record), status_code=202)

    return [
        Route("/deliveries", list_deliveries, methods=["GET"]),
        Route("/deliveries/{id}", get_delivery, methods=["GET"]),
        Route("/deliveries/{id}/redeliver", redeliver, methods=["POST"]),
    ]


def _delivery_id(request: Request) -> int:
    text = request.path_params["id"]
    if not is_integer(text) or int(text) < 1:
        raise NotFound("no such delivery")
    return int(text)
