"""GET /events: the raw events, newest first, paged with a cursor."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from meterd.config.model import SystemConfig
from meterd.http.params import bool_param, encode_cursor, int_cursor, limit_param, time_param
from meterd.http.responses import JSONResponse
from meterd.meters.groups import dimensions, group_key, metadata_of
from meterd.periods import period_keys
from meterd.storage.base import EventQuery, Store, StoredEvent
from meterd.timeutil import format_ms

NEXT_CURSOR_HEADER = "X-Next-Cursor"
T = TypeVar("T")


class EventOut(msgspec.Struct, rename="camel"):
    """A stored event; hour/day/week/month/year are its period keys."""

    id: str = msgspec.field(name="_id")
    customer_id: str
    event_type: str
    value: float
    metadata: msgspec.Raw | None
    timestamp: str
    received_at: str
    hour: str
    day: str
    week: str
    month: str
    year: str
    # For meters with groupBy: the event's group (its dimensions), as `groups` shows it.
    group: dict[str, str | None] | msgspec.UnsetType = msgspec.UNSET

    # "voided" once a correction took the event out of every total.
    status: str = "active"


def event_out(
    event: StoredEvent, timezone: str, group_by: Mapping[str, Sequence[str]] | None = None
) -> EventOut:
    keys = period_keys(event.ts_ms, timezone)
    dims = (group_by or {}).get(event.event_type)
    return EventOut(
        id=event.id,
        customer_id=event.customer_id,
        event_type=event.event_type,
        value=event.value,
        metadata=None if event.metadata is None else msgspec.Raw(event.metadata),
        timestamp=format_ms(event.ts_ms),
        received_at=format_ms(event.received_ms),
        hour=keys["hour"],
        day=keys["day"],
        week=keys["week"],
        month=keys["month"],
        year=keys["year"],
        group=(
            dimensions(dims, group_key(metadata_of(event.metadata), dims))
            if dims
            else msgspec.UNSET
        ),
        status="active" if event.voided_ms is None else "voided",
    )


def page(
    items: Sequence[T],
    limit: int,
    render: Callable[[T], msgspec.Struct],
    cursor_of: Callable[[T], tuple[int | str, ...]],
) -> Response:
    """A JSON array page; when it is full, the next page's cursor travels in a header."""
    headers = None
    if items and len(items) == limit:
        headers = {NEXT_CURSOR_HEADER: encode_cursor(*cursor_of(items[-1]))}
    return JSONResponse([render(item) for item in items], headers=headers)


async def event_page(
    store: Store,
    query: EventQuery,
    timezone: str,
    group_by: Mapping[str, Sequence[str]] | None = None,
) -> Response:
    events = await store.list_events(query)
    return page(
        events,
        query.limit,
        lambda event: event_out(event, timezone, group_by),
        lambda e: (e.ts_ms, e.seq),
    )


def events_routes(config: SystemConfig, store: Store) -> list[Route]:
    async def list_events(request: Request) -> Response:
        params = request.query_params
        cursor = int_cursor(params, 2)
        query = EventQuery(
            customer_id=params.get("customerId") or None,
            event_type=params.get("eventType") or None,
            from_ms=time_param(params, "from"),
            to_ms=time_param(params, "to"),
            limit=limit_param(params),
            before=(cursor[0], cursor[1]) if cursor else None,
            include_voided=bool_param(params, "includeVoided"),
        )
        return await event_page(store, query, config.timezone, group_by_of(config))

    return [Route("/events", list_events, methods=["GET"])]


def group_by_of(config: SystemConfig) -> dict[str, tuple[str, ...]]:
    return {name: meter.group_by for name, meter in config.events.items() if meter.group_by}
