"""Raw-event reads for meters in SQLite (DESIGN §6): events of a span, levels before it."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

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
from meterd.rollup import ExactNumber, Partial, add_exact, exact, parse_exact
from meterd.storage.sqlite import group_rollups
from meterd.storage.sqlite.daily import days_until
from meterd.storage.sqlite.day_spans import split_windows, values_sql
from meterd.storage.sqlite.meter_indexes import index_name, literal
from meterd.storage.sqlite.multirow import customers_sql
from meterd.storage.sqlite.rollups import partial_rows


def meter_events(
    conn: sqlite3.Connection,
    queries: Mapping[str, str],
    *,
    event_type: str,
    from_ms: int,
    to_ms: int,
    customer_ids: Sequence[str] | None = None,
) -> list[MeterEvent]:
    params: dict[str, Any] = {"from_ms": from_ms, "to_ms": to_ms}
    sql = with_type(queries["meter_events"], event_type)
    sql = _with_customers(sql, customer_ids, params)
    return [MeterEvent(*row) for row in conn.execute(sql, params)]


def bucket_partials(
    conn: sqlite3.Connection,
    queries: Mapping[str, str],
    *,
    event_type: str,
    from_ms: int,
    to_ms: int,
    customer_ids: Sequence[str] | None = None,
) -> list[tuple[str, int, Partial]]:
    params: dict[str, Any] = {
        "event_type": event_type,
        "from_ms": from_ms // BUCKET_MS,
        "to_ms": to_ms // BUCKET_MS,
    }
    sql = _with_customers(queries["bucket_partials"], customer_ids, params)
    return [
        (customer_id, int(bucket), partial)
        for customer_id, bucket, partial in partial_rows(conn.execute(sql, params))
    ]


def levels_before(
    conn: sqlite3.Connection,
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
        params[f"g{index}"] = '$."' + key.replace('"', '\\"') + '"'
        parts.append(f", json_type(metadata, :g{index}), json_extract(metadata, :g{index})")
    sql = with_type(queries["levels_before"], event_type)
    sql = sql.replace("/*groups*/", "".join(parts))
    sql = _with_customers(sql, customer_ids, params)
    return [MeterEvent(*row) for row in conn.execute(sql, params)]


def period_meter_values(
    conn: sqlite3.Connection,
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
            folds = folded_group_totals(
                conn,
                queries,
                event_type=event_type,
                windows=[(bounds.start_ms, bounds.end_ms)],
                group_by=meter.group_by,
                by_customer=True,
                customer_ids=customer_ids,
            )
            if folds is not None:
                values[event_type] = {
                    customer_id: grouped_value(meter, rows)
                    for customer_id, rows in sorted(_by_customer(folds).items())
                }
                continue
        found = rollup_values(
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
        events = meter_events(
            conn,
            queries,
            event_type=event_type,
            from_ms=bounds.start_ms,
            to_ms=bounds.end_ms,
            customer_ids=customer_ids,
        )
        before = (
            levels_before(
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


def folded_group_totals(
    conn: sqlite3.Connection,
    queries: Mapping[str, str],
    *,
    event_type: str,
    windows: Sequence[tuple[int, int]],
    group_by: Sequence[str],
    by_customer: bool,
    customer_ids: Sequence[str] | None = None,
    filters: Mapping[str, GroupFilter] | None = None,
) -> list[GroupTotal] | None:
    """A grouped meter folded per window: from its group rollups once built, else raw events."""
    found = group_rollups.group_totals(
        conn,
        queries,
        event_type=event_type,
        windows=windows,
        group_by=group_by,
        by_customer=by_customer,
        customer_ids=customer_ids,
        filters=filters,
        compacted_days=days_until(conn, queries),
    )
    if found is not None:
        return found
    return group_totals(
        conn,
        queries,
        event_type=event_type,
        windows=windows,
        group_by=group_by,
        by_customer=by_customer,
        customer_ids=customer_ids,
        filters=filters,
    )


def rollup_values(
    conn: sqlite3.Connection,
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
    compacted = days_until(conn, queries)
    if meter.op == "time_weighted_avg":
        return group_rollups.level_values(
            conn,
            queries,
            event_type=event_type,
            group_by=meter.group_by,
            from_ms=from_ms,
            to_ms=to_ms,
            customer_ids=customer_ids,
            compacted_days=compacted,
        )
    if meter.op in ("percentile", "unique_count"):
        return group_rollups.payload_values(
            conn,
            queries,
            event_type=event_type,
            meter=meter,
            from_ms=from_ms,
            to_ms=to_ms,
            customer_ids=customer_ids,
            compacted_days=compacted,
        )
    return None


def _by_customer(folds: Sequence[GroupTotal]) -> dict[str, list[GroupTotal]]:
    result: dict[str, list[GroupTotal]] = {}
    for fold in folds:
        result.setdefault(fold.customer_id or "", []).append(fold)
    return result


def with_type(sql: str, event_type: str) -> str:
    # A literal, not a parameter: so SQLite can use the meter's partial index.
    return sql.replace(":event_type", literal(event_type))


def _with_customers(
    sql: str,
    customer_ids: Sequence[str] | None,
    params: dict[str, Any],
    column: str = "customer_id",
) -> str:
    return sql.replace("/*customers*/", customers_sql(customer_ids, params, column))


def meter_aggregate(
    conn: sqlite3.Connection,
    queries: Mapping[str, str],
    *,
    event_type: str,
    meter: EventTypeConfig,
    customer_id: str,
    from_ms: int,
    to_ms: int,
) -> MeterValue | None:
    """One customer's value of an ungrouped event op, computed inside SQLite.

    None when SQL cannot give it exactly (grouped meters, non-integer levels): the
    caller computes it from `meter_events` instead.
    """
    if meter.group_by:
        return None
    params: dict[str, Any] = {"customer": customer_id, "from_ms": from_ms, "to_ms": to_ms}

    def one(name: str, **extra: Any) -> tuple[Any, ...]:
        sql = with_type(queries[name], event_type)
        row: tuple[Any, ...] = conn.execute(sql, {**params, **extra}).fetchone()
        return row

    if meter.op == "percentile":
        (count,) = one("meter_count")
        if not count:
            return MeterValue(None, 0)
        offset = nearest_rank_index(count, meter.percentile or 100.0)
        (value,) = one("meter_nth_value", offset=offset)
        return MeterValue(plain_number(value), count)
    if meter.op == "unique_count":
        path = '$."' + (meter.property_key or "").replace('"', '\\"') + '"'
        count, distinct = one("meter_distinct", path=path)
        return MeterValue(distinct if count else None, count)
    if meter.op == "time_weighted_avg":
        try:
            _, area, rows, before, held, inexact = one("meter_level_area")
        except sqlite3.OperationalError as error:  # integer overflow: exact in Python
            if "overflow" not in str(error):
                raise
            return None
        if not rows:
            return MeterValue(None, 0)
        if inexact or not isinstance(area, int | None):  # a product beyond 64 bits
            return None
        count = rows - (before or 0)
        if not count and not held:
            return MeterValue(None, 0)
        return MeterValue(level_average(area or 0, from_ms, to_ms), count)
    return None


def window_totals(
    conn: sqlite3.Connection,
    queries: Mapping[str, str],
    *,
    event_type: str,
    windows: Sequence[tuple[int, int]],
    by_customer: bool,
    customer_ids: Sequence[str] | None = None,
) -> list[WindowTotal] | None:
    """Rollups folded per window in SQL; None when an integer total overflows.

    Whole compacted UTC days come from daily_rollups, the rest from 15-minute rollups;
    run it in one snapshot (the compaction mark and the rows it describes).
    """
    spans = split_windows(windows, days_until(conn, queries))
    if spans is None:
        return None
    fine, days = spans
    sql = queries["window_totals"].replace("/*fine*/", values_sql(fine))
    sql = sql.replace("/*days*/", values_sql(days))
    sql = sql.replace("/*customer*/", ", customer_id" if by_customer else "")
    params: dict[str, Any] = {"event_type": event_type}
    sql = _with_customers(sql, customer_ids, params, "r.customer_id")
    try:
        rows = conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError as error:
        if "overflow" not in str(error):
            raise
        return None
    result = []
    for row in rows:
        place, customer = row[0], (row[1] if by_customer else None)
        count, int_total, decimals, low, high = row[2 if by_customer else 1 :]
        total: ExactNumber = int_total
        for text in (decimals or "").split():
            total = add_exact(total, parse_exact(text))
        result.append(WindowTotal(place, customer, count, total, low, high))
    return result


def window_place_sql(windows: Sequence[tuple[int, int]]) -> str:
    """SQL for the index of the window an event's ts falls in (ts within the windows).

    Windows of one length (those between a cut first and last one) are found by
    arithmetic; others (months, DST days) by a CASE over their ends.
    """
    step = regular_step(windows)
    if step is not None:
        base, length = step
        return f"((ts - {base}) / {length})"
    return (
        "CASE "
        + " ".join(f"WHEN ts < {hi} THEN {index}" for index, (_, hi) in enumerate(windows))
        + " END"
    )


def regular_step(windows: Sequence[tuple[int, int]]) -> tuple[int, int] | None:
    """(base, length) when window i is [base + i*length, base + (i+1)*length) cut to
    the range; None for fewer than three windows or windows of different lengths."""
    if len(windows) < 3:
        return None
    length = windows[1][1] - windows[1][0]
    base = windows[1][0] - length
    if windows[0][0] < base or windows[-1][1] > base + len(windows) * length:
        return None
    for index, (start, end) in enumerate(windows[1:-1], start=1):
        if start != base + index * length or end != start + length:
            return None
    return base, length


def group_text_sql(path_param: str) -> str:
    """SQL for a metadata value as group text (see meterd.meters.groups.as_text)."""
    value = f"json_extract(metadata, :{path_param})"
    return (
        f"CASE json_type(metadata, :{path_param})"
        f" WHEN 'text' THEN {value}"
        f" WHEN 'integer' THEN CAST({value} AS TEXT)"
        f" WHEN 'real' THEN iif({value} = CAST({value} AS INTEGER),"
        f" CAST(CAST({value} AS INTEGER) AS TEXT), CAST({value} AS TEXT))"
        f" WHEN 'true' THEN 'true' WHEN 'false' THEN 'false'"
        f" WHEN 'array' THEN {value} WHEN 'object' THEN {value} END"
    )


def group_totals(
    conn: sqlite3.Connection,
    queries: Mapping[str, str],
    *,
    event_type: str,
    windows: Sequence[tuple[int, int]],
    group_by: Sequence[str],
    by_customer: bool,
    customer_ids: Sequence[str] | None = None,
    filters: Mapping[str, GroupFilter] | None = None,
) -> list[GroupTotal] | None:
    """A meter's events folded per window, customer and group, in SQL.

    Reads through the meter's covering index when it has one (grouped meters), else
    through events_by_time or events_by_customer_time. None when an integer total
    overflows (the caller folds `meter_events` instead).
    """
    params: dict[str, Any] = {"from_ms": windows[0][0], "to_ms": windows[-1][1]}
    groups = []
    conditions = []
    for index, key in enumerate(group_by):
        params[f"g{index}"] = '$."' + key.replace('"', '\\"') + '"'
        groups.append(group_text_sql(f"g{index}"))
    for index, (key, kept) in enumerate((filters or {}).items()):
        if kept.keeps_all:
            continue
        params[f"f{index}"] = '$."' + key.replace('"', '\\"') + '"'
        names = []
        for number, value in enumerate(sorted(kept.values)):
            params[f"f{index}_{number}"] = value
            names.append(f":f{index}_{number}")
        listed = ", ".join(names)
        text = group_text_sql(f"f{index}")
        # NOT IN on the null group is NULL: a refused-values filter keeps it.
        conditions.append(
            f"AND coalesce({text} NOT IN ({listed}), 1)"
            if kept.negated
            else f"AND {text} IN ({listed})"
        )
    sql = with_type(queries["group_totals"], event_type)
    sql = sql.replace("/*place*/", window_place_sql(windows))
    sql = sql.replace("/*customer*/", ", customer_id" if by_customer else "")
    sql = sql.replace("/*groups*/", "".join(", " + g for g in groups))
    sql = sql.replace("/*filters*/", " ".join(conditions))
    sql = _with_customers(sql, customer_ids, params)
    try:
        try:
            rows = conn.execute(sql.replace("/*index*/", index_name(event_type)), params).fetchall()
        except sqlite3.OperationalError as error:
            if "no such index" not in str(error):
                raise
            rows = conn.execute(sql.replace("INDEXED BY /*index*/", ""), params).fetchall()
    except sqlite3.OperationalError as error:
        if "overflow" not in str(error):
            raise
        return None
    result = []
    width = len(group_by)
    for row in rows:
        at = 2 if by_customer else 1
        customer = row[1] if by_customer else None
        dims = tuple(row[at : at + width])
        count, int_total, others, low, high = row[at + width :]
        total: ExactNumber = int_total
        for text in (others or "").split():
            total = add_exact(total, exact(float(text)))
        result.append(GroupTotal(row[0], customer, dims, count, total, low, high))
    return result
