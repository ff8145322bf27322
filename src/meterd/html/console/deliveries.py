"""Webhook deliveries: filter by status, page, redeliver."""

from __future__ import annotations

from typing import get_args
from urllib.parse import urlencode

import msgspec
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from meterd.errors import NotFound
from meterd.html.console.auth import form_fields
from meterd.html.console.deps import ConsoleDeps
from meterd.html.params import choice_param, int_param
from meterd.storage.base import DeliveryRecord, DeliveryStatus
from meterd.timeutil import now_ms

STATUSES: tuple[str, ...] = get_args(DeliveryStatus)
PAGE_SIZE = 50


class DeliveriesPage(msgspec.Struct, frozen=True):
    statuses: list[str]
    status: str
    deliveries: list[DeliveryRecord]
    next_href: str | None
    notice: str | None


def delivery_routes(deps: ConsoleDeps) -> list[Route]:
    async def show(request: Request) -> Response:
        params = request.query_params
        status = choice_param(params, "status", ("", *STATUSES), "")
        before = int_param(params, "before")
        records = await deps.store.list_deliveries(
            status=status or None,  # type: ignore[arg-type]
            limit=PAGE_SIZE,
            before_id=before,
        )
        next_href = None
        if len(records) == PAGE_SIZE:
            next_href = "/console/deliveries?" + urlencode(
                {"status": status, "before": records[-1].id}
            )
        redelivered = int_param(params, "redelivered")
        notice = None if redelivered is None else f"Delivery {redelivered} is pending again."
        page = DeliveriesPage(list(STATUSES), status, records, next_href, notice)
        return deps.page(request, "deliveries.html", page, section="Deliveries")

    async def redeliver(request: Request) -> Response:
        text = request.path_params["id"]
        if not text.isascii() or not text.isdigit() or len(text) > 18:
            raise NotFound("no such delivery")
        record = await deps.store.redeliver(int(text), now_ms=now_ms())
        if record is None:
            raise NotFound("no such delivery")
        deps.on_redeliver()
        status = form_fields(await request.body()).get("status", "")
        query = {"redelivered": record.id, **({"status": status} if status in STATUSES else {})}
        return RedirectResponse("/console/deliveries?" + urlencode(query), status_code=303)

    return [
        Route("/deliveries", show, methods=["GET"]),
        Route("/deliveries/{id}/redeliver", redeliver, methods=["POST"]),
    ]
