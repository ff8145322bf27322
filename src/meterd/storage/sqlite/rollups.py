"""Rollup upkeep in SQLite: exact-sum SQL function, partials to rows and back."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from meterd.meters.group_rollup import DISTINCT, merge_payloads
from meterd.rollup import (
    BucketKey,
    ExactNumber,
    Partial,
    Point,
    add_exact,
    exact_decimal,
    format_exact,
    parse_exact,
)
from meterd.storage.sqlite.multirow import insert_rows

_INT64 = 2**63


def stored_total(number: ExactNumber) -> int | str:
    """An INTEGER when it fits, else the decimal as TEXT."""
    if isinstance(number, int) and -_INT64 <= number < _INT64:
        return number
    return format_exact(number)


def loaded_total(value: int | str) -> ExactNumber:
    return value if isinstance(value, int) else parse_exact(value)


def _exact_add(a: int | str, b: int | str) -> int | str:
    # SQLite calls this for every rollup row whose total is a decimal: one Decimal add
    # at EXACT_DIGITS (Decimal reads the stored digits exactly) instead of a parse each.
    if isinstance(a, int) and isinstance(b, int):
        return stored_total(a + b)
    total = add_exact(Decimal(a), Decimal(b))
    return stored_total(total if isinstance(total, int) else exact_decimal(total))


def _concat_values(a: bytes | None, b: bytes | None) -> bytes | None:
    """Two buckets' percentile payloads (packed doubles) as one; readers sort."""
    return None if a is None or b is None else a + b


def _union_texts(a: bytes | None, b: bytes | None) -> bytes | None:
    """Two buckets' distinct-value payloads as one."""
    return None if a is None or b is None else merge_payloads(DISTINCT, (a, b))


def register_functions(conn: sqlite3.Connection) -> None:
    conn.create_function("exact_add", 2, _exact_add, deterministic=True)
    conn.create_function("concat_values", 2, _concat_values, deterministic=True)
    conn.create_function("union_texts", 2, _union_texts, deterministic=True)


def partial_columns(p: Partial) -> tuple[Any, ...]:
    """A partial as its stored columns: count, total, minimum, maximum, first_*, last_*."""
    return (
        p.count,
        stored_total(p.sum),
        p.min,
        p.max,
        p.first.ts_ms,
        p.first.seq,
        p.first.value,
        p.last.ts_ms,
        p.last.seq,
        p.last.value,
    )


def upsert_partials(
    conn: sqlite3.Connection, sql: str, partials: Mapping[BucketKey, Partial]
) -> None:
    insert_rows(
        conn,
        sql,
        [
            (customer_id, bucket, event_type, *partial_columns(p))
            for (customer_id, event_type, bucket), p in sorted(partials.items(), key=_in_key_order)
        ],
    )


def _in_key_order(item: tuple[BucketKey, Partial]) -> tuple[str, int, str]:
    # The table's primary key order: sorted rows walk the B-tree once, page by page,
    # instead of at random (measured: the upsert costs a half to a third as much).
    (customer_id, event_type, bucket), _ = item
    return customer_id, bucket, event_type


def partial_rows(rows: Iterable[tuple[Any, ...]]) -> Iterable[tuple[str, str, Partial]]:
    """Rows of (customer_id, event_type, count, total, minimum, maximum, first_*, last_*)."""
    for row in rows:
        customer_id, event_type, count, total, low, high = row[:6]
        first = Point(row[6], row[7], row[8])
        last = Point(row[9], row[10], row[11])
        yield customer_id, event_type, Partial(count, loaded_total(total), low, high, first, last)


def folded_partials(
    totals: Iterable[tuple[Any, ...]],
    firsts: Iterable[tuple[Any, ...]],
    lasts: Iterable[tuple[Any, ...]],
) -> dict[str, Partial]:
    """Partials per event type from the customer_totals, _firsts and _lasts queries."""
    first = {event_type: Point(ts, seq, value) for event_type, seq, value, ts in firsts}
    last = {event_type: Point(ts, seq, value) for event_type, seq, value, ts in lasts}
    result = {}
    for event_type, count, int_total, decimal_totals, low, high in totals:
        total: ExactNumber = int_total
        for text in (decimal_totals or "").split():
            total = add_exact(total, parse_exact(text))
        result[event_type] = Partial(count, total, low, high, first[event_type], last[event_type])
    return result
