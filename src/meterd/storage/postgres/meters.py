"""Raw-event reads for meters in PostgreSQL (DESIGN §6): events of a span, levels before it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg

from meterd.config.model import EventTypeConfig
from meterd.meters.groups import GroupFilter, GroupTotal, MeterEvent, WindowTotal
from meterd.meters.values import (
    FOLDED_IN_DATABASE,
    MeterValue,
    grouped_value,
    level_average,
    meter_values,
    nearest_rank_index,
    plain_number,
)
from meterd.periods import BUCKET_MS, PeriodBounds
from meterd.storage.postgres import group_rollups
from meterd.storage.postgres.customer_filter import customers_sql
from meterd.storage.postgres.meter_indexes import literal

Connection = psycopg.AsyncConnection[tuple[Any, ...]]


async def meter_events(
    conn: Connection,
    queries: Mapping[str, str],
    *,
    event_type: str,
    from_ms: int,
    to_ms: int,
    customer_ids: Sequence[str] | None = None,
) -> list[MeterEvent]:
    params: dict[str, Any] = {"from_ms": from_ms, "to_ms": to_ms}
    sql = with_type(queries["meter_events"], event_type)
    sql = with_customers(sql, customer_ids, params)
    cursor = await conn.execute(sql.encode(), params)
    return [_event(row) for row in await cursor.fetchall()]


async def levels_before(
    conn: Connection,
    queries: Mapping[str, str],
    *,
    event_type: str,
    before_ms: int,
    group_by: Sequence[str],
    customer_ids: Sequence[str] | None = None,
) -> list[MeterEvent]:
    params: dict[str, Any] = {"before_ms": before_ms}
    parts = []
    for index, key in enumerate(group_by):
        params[f"g{index}"] = key
        parts.append(f", metadata -> %(g{index})s::text")
    sql = with_type(queries["levels_before"], event_type)
    sql = sql.replace("/*groups*/", "".join(parts))
    sql = with_customers(sql, customer_ids, params)
    cursor = await conn.execute(sql.encode(), params)
    return [_event(row) for row in await cursor.fetchall()]


async def period_meter_values(
    conn: Connection,
    queries: Mapping[str, str],
    *,
    meters: Mapping[str, EventTypeConfig],
    bounds: PeriodBounds,
    customer_ids: Sequence[str] | None = None,
) -> dict[str, dict[str, MeterValue]]:
    """Every customer's value of each meter over `bounds`, by event type, from raw events."""
    values = {}
    for event_type, meter in meters.items():
        if meter.group_by and meter.op in FOLDED_IN_DATABASE:
            folds = await folded_group_totals(
                conn,
                queries,
                event_type=event_type,
                windows=[(bounds.start_ms, bounds.end_ms)],
                group_by=meter.group_by,
                by_customer=True,
                customer_ids=customer_ids,
            )
            by_customer: dict[str, list[GroupTotal]] = {}
            for fold in folds:
                by_customer.setdefault(fold.customer_id or "", []).append(fold)
            values[event_type] = {
                customer_id: grouped_value(meter, rows)
                for customer_id, rows in sorted(by_customer.items())
            }
            continue
        found = await rollup_values(
            conn,
            queries,
            event_type=event_type,
            meter=meter,
            from_ms=bounds.start_ms,
            to_ms=bounds.end_ms,
            customer_ids=customer_ids,
        )
        if found is not None:
            values[event_type] = found
            continue
        events = await meter_events(
            conn,
            queries,
            event_type=event_type,
            from_ms=bounds.start_ms,
            to_ms=bounds.end_ms,
            customer_ids=customer_ids,
        )
        before = (
            await levels_before(
                conn,
                queries,
                event_type=event_type,
                before_ms=bounds.start_ms,
                group_by=meter.group_by,
                customer_ids=customer_ids,
            )
            if meter.op == "time_weighted_avg"
            else []
        )
        values[event_type] = meter_values(
            meter, events, start_ms=bounds.start_ms, end_ms=bounds.end_ms, levels_before=before
        )
    return values


def _event(row: tuple[Any, ...]) -> MeterEvent:
    customer_id, ts, seq, value, metadata = row
    return MeterEvent(customer_id, ts, seq, _number(value), metadata)


def _number(value: Decimal) -> float:
    if value == value.to_integral_value():
        return int(value)
    return float(value)


def with_type(sql: str, event_type: str) -> str:
    # A literal, not a parameter: so the planner can use the meter's partial index.
    return sql.replace("%(event_type)s", literal(event_type).replace("%", "%%"))


def with_customers(
    sql: str,
    customer_ids: Sequence[str] | None,
    params: dict[str, Any],
    column: str = "customer_id",
) -> str:
    return sql.replace("/*customers*/", customers_sql(customer_ids, params, column))


async def meter_aggregate(
    conn: Connection,
    queries: Mapping[str, str],
    *,
    event_type: str,
    meter: EventTypeConfig,
    customer_id: str,
    from_ms: int,
    to_ms: int,
) -> MeterValue | None:
    """One customer's value of an ungrouped event op, computed inside PostgreSQL.

    None for grouped meters: the caller computes those from `meter_events`.
    """
    if meter.group_by:
        return None
    params: dict[str, Any] = {"customer": customer_id, "from_ms": from_ms, "to_ms": to_ms}

    async def one(name: str, **extra: Any) -> tuple[Any, ...]:
        sql = with_type(queries[name], event_type)
        cursor = await conn.execute(sql.encode(), {**params, **extra})
        row = await cursor.fetchone()
        assert row is not None
        return row

    if meter.op == "percentile":
        (count,) = await one("meter_count")
        if not count:
            return MeterValue(None, 0)
        offset = nearest_rank_index(count, meter.percentile or 100.0)
        (value,) = await one("meter_nth_value", offset=offset)
        return MeterValue(plain_number(_number(value)), count)
    if meter.op == "unique_count":
        count, distinct = await one("meter_distinct", key=meter.property_key or "")
        return MeterValue(distinct if count else None, count)
    if meter.op == "time_weighted_avg":
        area, rows, before, held = await one("meter_level_area")
        count = rows - before
        if not rows or (not count and not held):
            return MeterValue(None, 0)
        exact_area = int(area) if area == area.to_integral_value() else area
        return MeterValue(level_average(exact_area, from_ms, to_ms), count)
    return None


async def window_totals(
    conn: Connection,
    queries: Mapping[str, str],
    *,
    event_type: str,
    windows: Sequence[tuple[int, int]],
    by_customer: bool,
    customer_ids: Sequence[str] | None = None,
) -> list[WindowTotal]:
    """Rollups folded per window (and customer) in SQL."""
    params: dict[str, Any] = {
        "event_type": event_type,
        "places": list(range(len(windows))),
        "los": [lo // BUCKET_MS for lo, _ in windows],
        "his": [hi // BUCKET_MS for _, hi in windows],
    }
    sql = queries["window_totals"].replace("/*customer*/", ", r.customer_id" if by_customer else "")
    sql = with_customers(sql, customer_ids, params, "r.customer_id")
    cursor = await conn.execute(sql.encode(), params)
    result = []
    for row in await cursor.fetchall():
        place, customer = row[0], (row[1] if by_customer else None)
        count, total, low, high = row[2 if by_customer else 1 :]
        exact_total = int(total) if total == total.to_integral_value() else total.normalize()
        result.append(WindowTotal(place, customer, count, exact_total, _number(low), _number(high)))
    return result


def group_text_sql(key_param: str) -> str:
    """SQL for a metadata value as group text (see meterd.meters.groups.as_text)."""
    value = f"metadata -> %({key_param})s::text"
    return (
        f"CASE jsonb_typeof({value})"
        f" WHEN 'string' THEN metadata ->> %({key_param})s::text"
        f" WHEN 'number' THEN trim_scale((metadata ->> %({key_param})s::text)::numeric)::text"
        f" WHEN 'boolean' THEN metadata ->> %({key_param})s::text"
        f" WHEN 'null' THEN NULL ELSE ({value})::text END"
    )


async def rollup_values(
    conn: Connection,
    queries: Mapping[str, str],
    *,
    event_type: str,
    meter: EventTypeConfig,
    from_ms: int,
    to_ms: int,
    customer_ids: Sequence[str] | None = None,
) -> dict[str, MeterValue] | None:
    """A time_weighted_avg, percentile or unique_count meter per customer from its group
    rollups, or None (not such a meter, or its rows cannot answer yet)."""
    if meter.op == "time_weighted_avg":
        return await group_rollups.level_values(
            conn,
            queries,
            event_type=event_type,
            group_by=meter.group_by,
            from_ms=from_ms,
            to_ms=to_ms,
            customer_ids=customer_ids,
        )
    if meter.op in ("percentile", "unique_count"):
        return await group_rollups.payload_values(
            conn,
            queries,
            event_type=event_type,
            meter=meter,
            from_ms=from_ms,
            to_ms=to_ms,
            customer_ids=customer_ids,
        )
    return None


async def folded_group_totals(
    conn: Connection,
    queries: Mapping[str, str],
    *,
    event_type: str,
    windows: Sequence[tuple[int, int]],
    group_by: Sequence[str],
    by_customer: bool,
    customer_ids: Sequence[str] | None = None,
    filters: Mapping[str, GroupFilter] | None = None,
) -> list[GroupTotal]:
    """A grouped meter folded per window: from its group rollups once built, else raw events."""
    found = await group_rollups.group_totals(
        conn,
        queries,
        event_type=event_type,
        windows=windows,
        group_by=group_by,
        by_customer=by_customer,
        customer_ids=customer_ids,
        filters=filters,
    )
    if found is not None:
        return found
    return await group_totals(
        conn,
        queries,
        event_type=event_type,
        windows=windows,
        group_by=group_by,
        by_customer=by_customer,
        customer_ids=customer_ids,
        filters=filters,
    )


async def group_totals(
    conn: Connection,
    queries: Mapping[str, str],
    *,
    event_type: str,
    windows: Sequence[tuple[int, int]],
    group_by: Sequence[str],
    by_customer: bool,
    customer_ids: Sequence[str] | None = None,
    filters: Mapping[str, GroupFilter] | None = None,
) -> list[GroupTotal]:
    """A meter's events folded per window, customer and group, in SQL."""
    params: dict[str, Any] = {
        "from_ms": windows[0][0],
        "to_ms": windows[-1][1],
        "starts": [_instant(start) for start, _ in windows],
    }
    groups = []
    conditions = []
    for index, key in enumerate(group_by):
        params[f"g{index}"] = key
        groups.append(group_text_sql(f"g{index}"))
    for index, (key, kept) in enumerate((filters or {}).items()):
        if kept.keeps_all:
            continue
        params[f"f{index}"] = key
        params[f"fv{index}"] = sorted(kept.values)
        text = group_text_sql(f"f{index}")
        listed = f"%(fv{index})s::text[]"
        # <> ALL on the null group is NULL: a refused-values filter keeps it.
        conditions.append(
            f"AND coalesce({text} <> ALL({listed}), true)"
            if kept.negated
            else f"AND {text} = ANY({listed})"
        )
    sql = with_type(queries["group_totals"], event_type)
    sql = sql.replace("/*customer*/", ", customer_id" if by_customer else "")
    sql = sql.replace("/*groups*/", "".join(", " + g for g in groups))
    sql = sql.replace("/*filters*/", " ".join(conditions))
    sql = with_customers(sql, customer_ids, params)
    cursor = await conn.execute(sql.encode(), params)
    result = []
    width = len(group_by)
    for row in await cursor.fetchall():
        at = 2 if by_customer else 1
        customer = row[1] if by_customer else None
        dims = tuple(row[at : at + width])
        count, total, low, high = row[at + width :]
        exact_total = int(total) if total == total.to_integral_value() else total.normalize()
        result.append(
            GroupTotal(row[0] - 1, customer, dims, count, exact_total, _number(low), _number(high))
        )
    return result


def _instant(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
