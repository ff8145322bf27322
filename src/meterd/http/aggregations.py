"""Aggregation records, the trigger, a record's events and live customer usage."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from meterd.aggregation import (
    AggregationRow,
    Status,
    default_period,
    split_aggregation_id,
)
from meterd.closing import AggregationCounts, PeriodCloser
from meterd.config.model import SystemConfig
from meterd.errors import InvalidRequest, NotFound, shown
from meterd.http.events import event_page, group_by_of, page
from meterd.http.params import decode_cursor, int_cursor, is_integer, limit_param, time_param
from meterd.http.responses import JSONResponse
from meterd.meters.values import GroupValue
from meterd.storage.base import AggregationQuery, EventQuery, Store
from meterd.timeutil import format_ms, now_ms
from meterd.usage import usage_of


class WebhookStatus(msgspec.Struct, rename="camel"):
    delivered: bool = False
    delivered_at: str | None = None
    attempts: int = 0


class AggregationOut(msgspec.Struct, rename="camel"):
    """A customer's totals for one period; `periodEnd` is the period's last millisecond."""

    id: str = msgspec.field(name="_id")
    customer_id: str
    period: str
    period_key: str
    period_start: str
    period_end: str
    status: Status
    events: dict[str, int | float]
    event_counts: dict[str, int]
    event_count: int
    timestamp: str
    created_at: str
    updated_at: str
    webhook_status: WebhookStatus
    groups: dict[str, list[GroupValue]] | msgspec.UnsetType = msgspec.UNSET

    # 1 as closed; each later revision recomputes it after late events or corrections.
    revision: int = 1


class TriggerOut(AggregationCounts):
    message: str = "Aggregation complete"


def aggregation_out(row: AggregationRow) -> AggregationOut:
    return AggregationOut(
        id=row.id,
        customer_id=row.customer_id,
        period=row.period,
        period_key=row.period_key,
        period_start=format_ms(row.period_start),
        period_end=format_ms(row.period_end - 1),
        status=row.status,
        events=row.totals.events,
        event_counts=row.totals.event_counts,
        event_count=row.totals.event_count,
        timestamp=format_ms(row.updated_ms),
        created_at=format_ms(row.created_ms),
        updated_at=format_ms(row.updated_ms),
        webhook_status=WebhookStatus(
            delivered=row.deliveries > 0 and row.delivered == row.deliveries,
            delivered_at=format_ms(row.delivered_ms) if row.delivered_ms is not None else None,
            attempts=row.attempts,
        ),
        groups=row.totals.groups or msgspec.UNSET,
        revision=row.revision,
    )


def aggregation_routes(
    config: SystemConfig,
    store: Store,
    closer: PeriodCloser,
    *,
    on_closed: Callable[[], None] = lambda: None,
) -> list[Route]:
    async def list_aggregations(request: Request) -> Response:
        params = request.query_params
        period = params.get("period") or None
        if period is not None and period not in closer.calendars:
            raise InvalidRequest(f"period: {shown(period)} is not configured", field="period")
        cursor = decode_cursor(params)
        if cursor is not None and (len(cursor) != 2 or not is_integer(cursor[0])):
            raise InvalidRequest("cursor: not a cursor returned by this API", field="cursor")
        query = AggregationQuery(
            customer_id=params.get("customerId") or None,
            period=period,
            from_ms=time_param(params, "from"),
            to_ms=time_param(params, "to"),
            limit=limit_param(params),
            before=(int(cursor[0]), cursor[1]) if cursor else None,
        )
        rows = await store.list_aggregations(query)
        return page(rows, query.limit, aggregation_out, lambda row: (row.period_start, row.id))

    async def trigger(request: Request) -> Response:
        counts = await closer.trigger(now_ms())
        if counts.closed or counts.revised:
            on_closed()
        return JSONResponse(
            TriggerOut(closed=counts.closed, open=counts.open, revised=counts.revised),
            status_code=202,
        )

    async def aggregation_events(request: Request) -> Response:
        aggregation_id = request.path_params["id"]
        found = split_aggregation_id(aggregation_id, closer.calendars)
        if found is None:
            raise NotFound(
                f"{shown(aggregation_id)} is not an aggregation id of a configured period"
            )
        customer_id, _, bounds = found
        params = request.query_params
        cursor = int_cursor(params, 2)
        query = EventQuery(
            customer_id=customer_id,
            event_type=params.get("eventType") or None,
            from_ms=bounds.start_ms,
            to_ms=bounds.last_ms,
            limit=limit_param(params),
            before=(cursor[0], cursor[1]) if cursor else None,
            include_voided=True,
        )
        return await event_page(store, query, config.timezone, group_by_of(config))

    async def customer_usage(request: Request) -> Response:
        params = request.query_params
        name = params.get("period") or default_period(closer.calendars)
        calendar = closer.calendars.get(name)
        if calendar is None:
            raise InvalidRequest(f"period: {shown(name)} is not configured", field="period")
        now = now_ms()
        at = time_param(params, "at")
        bounds = calendar.bounds_at(now if at is None else at)
        usage = await usage_of(
            store,
            ops=closer.ops,
            meters=closer.meters,
            customer_id=request.path_params["customerId"],
            period=name,
            bounds=bounds,
            now_ms=now,
        )
        return JSONResponse(usage)

    return [
        Route("/aggregations", list_aggregations, methods=["GET"]),
        Route("/aggregations/trigger", trigger, methods=["POST"]),
        Route("/aggregations/{id:path}/events", aggregation_events, methods=["GET"]),
        Route("/customers/{customerId:path}/usage", customer_usage, methods=["GET"]),
    ]
