"""The usage query (DESIGN §7): a meter's values per window, customer and group.

`usage_query` checks a request against the config; `run_usage_query` answers it.
HTTP (`GET /usage/query`), the CLI (`meterd query`) and later the OpenMeter API
call these alike.
"""

from __future__ import annotations

import bisect
import csv
import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from meterd.config.model import FOLDABLE_OPS, EventTypeConfig, SystemConfig
from meterd.errors import InvalidRequest
from meterd.meters.groups import (
    GroupFilter,
    GroupKey,
    MeterEvent,
    WindowTotal,
    group_key,
    metadata_of,
    sort_key,
)
from meterd.meters.values import (
    FOLDED_IN_DATABASE,
    Number,
    folded_value,
    time_weighted_area,
    value_of,
)
from meterd.meters.windows import WINDOW_SIZES, WindowSize, windows
from meterd.periods import BUCKET_MS
from meterd.rollup import Partial, json_number
from meterd.storage.base import Store
from meterd.timeutil import format_ms

CUSTOMER = "customerId"
DEFAULT_RANGE_MS = 86_400_000


class UsageQuery(msgspec.Struct, frozen=True):
    """A checked usage query: windows are [from_ms, to_ms) cut by `window_size`."""

    meter: str
    from_ms: int
    to_ms: int
    window_size: WindowSize | None
    window_time_zone: str
    customer_ids: tuple[str, ...] | None
    group_by: tuple[str, ...]  # the meter's groupBy keys and/or "customerId"
    filters: dict[str, GroupFilter]  # key -> the group values kept

    @property
    def dimensions(self) -> tuple[str, ...]:
        return tuple(key for key in self.group_by if key != CUSTOMER)


class QueryRow(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    window_start: str
    window_end: str
    customer_id: str | None = None  # present when grouped by customerId
    group_by: dict[str, str | None]
    value: Number
    count: int


class QueryResult(msgspec.Struct, rename="camel"):
    meter: str
    from_: str = msgspec.field(name="from")
    to: str = ""
    window_size: str | None = None
    window_time_zone: str = "UTC"
    data: list[QueryRow] = []


def usage_query(
    config: SystemConfig,
    *,
    meter: str | None,
    from_ms: int | None,
    to_ms: int | None,
    now_ms: int,
    window_size: str | None = None,
    window_time_zone: str | None = None,
    customer_ids: Sequence[str] = (),
    group_by: Sequence[str] = (),
    filters: Sequence[str] = (),
) -> UsageQuery:
    """The query these parameters ask for; InvalidRequest naming the field if they are wrong."""
    if not meter:
        raise InvalidRequest("meter: required, e.g. meter=api.calls", field="meter")
    found = config.events.get(meter)
    if found is None:
        raise InvalidRequest(
            f"meter: {meter!r} is not a configured meter "
            f"(configured: {', '.join(sorted(config.events))})",
            field="meter",
        )
    to = now_ms if to_ms is None else to_ms
    start = to - DEFAULT_RANGE_MS if from_ms is None else from_ms
    if start >= to:
        raise InvalidRequest("from: must be before to", field="from")
    size = _window_size(window_size)
    zone = window_time_zone or config.timezone
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidRequest(
            f"windowTimeZone: {zone!r} is not an IANA time zone", field="windowTimeZone"
        ) from None
    keys = _group_by(found, group_by)
    query = UsageQuery(
        meter=meter,
        from_ms=start,
        to_ms=to,
        window_size=size,
        window_time_zone=zone,
        customer_ids=tuple(dict.fromkeys(customer_ids)) or None,
        group_by=keys,
        filters=_filters(found, filters),
    )
    windows(from_ms=start, to_ms=to, size=size, timezone=zone)  # refuses too many windows
    return query


def _window_size(text: str | None) -> WindowSize | None:
    if not text:
        return None
    for size in get_args(WindowSize):
        if text.lower() == size:
            found: WindowSize = size
            return found
    raise InvalidRequest(
        f"windowSize: {text!r} is not one of {', '.join(WINDOW_SIZES)}", field="windowSize"
    )


def _group_by(meter: EventTypeConfig, keys: Sequence[str]) -> tuple[str, ...]:
    allowed = (*meter.group_by, CUSTOMER)
    for key in keys:
        if key not in allowed:
            raise InvalidRequest(
                f"groupBy: {key!r} is not one of this meter's dimensions ({', '.join(allowed)})",
                field="groupBy",
            )
    return tuple(dict.fromkeys(keys))


def _filters(meter: EventTypeConfig, filters: Sequence[str]) -> dict[str, GroupFilter]:
    accepted: dict[str, set[str]] = {}
    for text in filters:
        key, colon, value = text.partition(":")
        if not colon:
            raise InvalidRequest(f"filter: {text!r} is not key:value", field="filter")
        if key not in meter.group_by:
            raise InvalidRequest(
                f"filter: {key!r} is not in this meter's groupBy "
                f"({', '.join(meter.group_by) or 'none'})",
                field="filter",
            )
        accepted.setdefault(key, set()).add(value)
    return {key: GroupFilter(frozenset(values)) for key, values in accepted.items()}


async def run_usage_query(store: Store, config: SystemConfig, query: UsageQuery) -> QueryResult:
    """The query's rows: one per window, customer (if grouped by it) and group; empty left out."""
    meter = config.events[query.meter]
    spans = windows(
        from_ms=query.from_ms,
        to_ms=query.to_ms,
        size=query.window_size,
        timezone=query.window_time_zone,
    )
    if any(kept.keeps_none for kept in query.filters.values()):
        return _result(query, [])  # (SQLite cannot plan `IN ()` with INDEXED BY)
    rollups = _folds_from_rollups(meter, query, spans)
    totals = None
    if rollups and meter.op in SQL_FOLDED_OPS:
        totals = await store.window_totals(
            event_type=query.meter,
            windows=spans,
            by_customer=CUSTOMER in query.group_by,
            customer_ids=query.customer_ids,
        )
    grouped = None
    if not rollups and meter.op in SQL_FOLDED_OPS:
        # Groups, filters or windows off the 15-minute rollups: fold raw events in SQL.
        grouped = await store.group_totals(
            event_type=query.meter,
            windows=spans,
            group_by=query.dimensions,
            by_customer=CUSTOMER in query.group_by,
            customer_ids=query.customer_ids,
            filters=query.filters,
        )
    if totals is not None:
        rows = _rows_from_totals(meter, query, spans, totals)
    elif grouped is not None:
        rows = _sorted_rows(
            query,
            spans,
            {
                (g.place, g.customer_id, g.group): (
                    folded_value(
                        meter.op,
                        events=g.events,
                        total=g.total,
                        minimum=g.minimum,
                        maximum=g.maximum,
                    ),
                    g.events,
                )
                for g in grouped
            },
        )
    elif rollups:
        partials = await store.bucket_partials(
            event_type=query.meter,
            from_ms=query.from_ms,
            to_ms=query.to_ms,
            customer_ids=query.customer_ids,
        )
        rows = _rows_from_partials(meter, query, spans, partials)
    else:
        events = await store.meter_events(
            event_type=query.meter,
            from_ms=query.from_ms,
            to_ms=query.to_ms,
            customer_ids=query.customer_ids,
        )
        before: list[MeterEvent] = []
        if meter.op == "time_weighted_avg":
            before = await store.levels_before(
                event_type=query.meter,
                before_ms=query.from_ms,
                group_by=meter.group_by,
                customer_ids=query.customer_ids,
            )
        rows = query_rows(meter, query, spans, events, before)
    return _result(query, rows)


def _result(query: UsageQuery, rows: list[QueryRow]) -> QueryResult:
    return QueryResult(
        meter=query.meter,
        from_=format_ms(query.from_ms),
        to=format_ms(query.to_ms),
        window_size=query.window_size,
        window_time_zone=query.window_time_zone,
        data=rows,
    )


def _folds_from_rollups(
    meter: EventTypeConfig, query: UsageQuery, spans: Sequence[tuple[int, int]]
) -> bool:
    """Whether the 15-minute rollups answer the query: no groups or filters, and every
    window (minute windows never) on bucket bounds."""
    return (
        meter.op in FOLDABLE_OPS
        and not query.dimensions
        and not query.filters
        and all(start % BUCKET_MS == 0 and end % BUCKET_MS == 0 for start, end in spans)
    )


SQL_FOLDED_OPS = FOLDED_IN_DATABASE
RowKey = tuple[int, str | None, GroupKey]


def _rows_from_totals(
    meter: EventTypeConfig,
    query: UsageQuery,
    spans: Sequence[tuple[int, int]],
    totals: Iterable[WindowTotal],
) -> list[QueryRow]:
    values: dict[RowKey, tuple[Number, int]] = {
        (t.place, t.customer_id, ()): (
            folded_value(
                meter.op, events=t.events, total=t.total, minimum=t.minimum, maximum=t.maximum
            ),
            t.events,
        )
        for t in totals
        if t.events
    }
    return _sorted_rows(query, spans, values)


def _rows_from_partials(
    meter: EventTypeConfig,
    query: UsageQuery,
    spans: Sequence[tuple[int, int]],
    partials: Iterable[tuple[str, int, Partial]],
) -> list[QueryRow]:
    starts = [start for start, _ in spans]
    by_customer = CUSTOMER in query.group_by
    merged: dict[RowKey, Partial] = {}
    for customer_id, bucket, partial in partials:
        index = bisect.bisect_right(starts, bucket * BUCKET_MS) - 1
        key: RowKey = (index, customer_id if by_customer else None, ())
        known = merged.get(key)
        merged[key] = partial if known is None else known.merge(partial)
    return _sorted_rows(
        query, spans, {key: (p.value(meter.op), p.count) for key, p in merged.items()}
    )


def query_rows(
    meter: EventTypeConfig,
    query: UsageQuery,
    spans: Sequence[tuple[int, int]],
    events: Iterable[MeterEvent],
    levels_before: Iterable[MeterEvent] = (),
) -> list[QueryRow]:
    """The query's rows computed from raw events: the exact reference for every op."""
    dims = query.dimensions
    by_customer = CUSTOMER in query.group_by
    starts = [start for start, _ in spans]

    def accepted(metadata: Mapping[str, object]) -> bool:
        return all(
            kept.matches(group_key(metadata, (key,))[0]) for key, kept in query.filters.items()
        )

    if meter.op == "time_weighted_avg":
        return _time_weighted_rows(meter, query, spans, events, levels_before, accepted)
    grouped: dict[RowKey, list[MeterEvent]] = {}
    for event in sorted(events, key=lambda e: (e.ts_ms, e.seq)):
        metadata = metadata_of(event.metadata)
        if not accepted(metadata):
            continue
        index = bisect.bisect_right(starts, event.ts_ms) - 1
        key: RowKey = (index, event.customer_id if by_customer else None, group_key(metadata, dims))
        grouped.setdefault(key, []).append(event)
    values: dict[RowKey, tuple[Number, int]] = {}
    for key, members in grouped.items():
        start, end = spans[key[0]]
        value = value_of(meter, members, start_ms=start, end_ms=end)
        if value is not None:
            values[key] = (value, len(members))
    return _sorted_rows(query, spans, values)


def _time_weighted_rows(
    meter: EventTypeConfig,
    query: UsageQuery,
    spans: Sequence[tuple[int, int]],
    events: Iterable[MeterEvent],
    levels_before: Iterable[MeterEvent],
    accepted: Callable[[Mapping[str, object]], bool],
) -> list[QueryRow]:
    """Levels per series (customer and full group); a row adds up the series it holds."""
    dims = query.dimensions
    by_customer = CUSTOMER in query.group_by
    series: dict[tuple[str, GroupKey], tuple[MeterEvent | None, list[MeterEvent]]] = {}
    for event in levels_before:
        metadata = metadata_of(event.metadata)
        if not accepted(metadata):
            continue
        name = (event.customer_id, group_key(metadata, meter.group_by))
        known = series.get(name, (None, []))[0]
        if known is None or (event.ts_ms, event.seq) > (known.ts_ms, known.seq):
            series[name] = (event, [])
    for event in events:
        metadata = metadata_of(event.metadata)
        if accepted(metadata):
            name = (event.customer_id, group_key(metadata, meter.group_by))
            series.setdefault(name, (None, []))[1].append(event)
    areas: dict[RowKey, tuple[int | Decimal, int]] = {}
    for (customer_id, full_key), (before, members) in series.items():
        members.sort(key=lambda e: (e.ts_ms, e.seq))
        dims_key = tuple(full_key[meter.group_by.index(d)] for d in dims)
        times = [e.ts_ms for e in members]
        level = before
        for index, (start, end) in enumerate(spans):
            low = bisect.bisect_left(times, start)
            high = bisect.bisect_left(times, end)
            inside = members[low:high]
            if level is None and not inside:
                continue
            area = time_weighted_area(inside, start, end, level)
            if inside:
                level = inside[-1]
            if not area and not inside:
                continue
            key: RowKey = (index, customer_id if by_customer else None, dims_key)
            total, count = areas.get(key, (0, 0))
            areas[key] = (total + area, count + len(inside))
    values = {
        key: (json_number(Decimal(area) / (spans[key[0]][1] - spans[key[0]][0])), count)
        for key, (area, count) in areas.items()
    }
    return _sorted_rows(query, spans, values)


def _sorted_rows(
    query: UsageQuery,
    spans: Sequence[tuple[int, int]],
    values: Mapping[RowKey, tuple[Number, int]],
) -> list[QueryRow]:
    dims = query.dimensions
    rows = []
    for key in sorted(values, key=lambda k: (k[0], k[1] or "", sort_key(k[2]))):
        index, customer_id, dims_key = key
        value, count = values[key]
        start, end = spans[index]
        rows.append(
            QueryRow(
                window_start=format_ms(start),
                window_end=format_ms(end),
                customer_id=customer_id,
                group_by=dict(zip(dims, dims_key, strict=True)),
                value=value,
                count=count,
            )
        )
    return rows


def query_csv(query: UsageQuery, result: QueryResult) -> str:
    """The rows as CSV with a header: windows, [customerId], dimensions, value, count."""
    dims = list(query.dimensions)
    with_customer = CUSTOMER in query.group_by
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    customer_column = [CUSTOMER] if with_customer else []
    writer.writerow(["windowStart", "windowEnd", *customer_column, *dims, "value", "count"])
    for row in result.data:
        writer.writerow(
            [
                row.window_start,
                row.window_end,
                *([row.customer_id] if with_customer else []),
                *("" if row.group_by[d] is None else row.group_by[d] for d in dims),
                row.value,
                row.count,
            ]
        )
    return out.getvalue()
