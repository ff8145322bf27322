"""Whole days folded into daily rollups change no live number.

Reads take compacted days from the daily rows and the period's edges from the
15-minute rows; late events for a compacted day must reach both. Checked against
a naive fold of the events, for every operation, on both backends (PostgreSQL
keeps no daily rows: its compaction folds nothing and its reads must agree too).
"""

from __future__ import annotations

import sqlite3
from decimal import Decimal

import pytest

from meterd.config.model import Op
from meterd.ingest import NewEvent
from meterd.periods import PeriodBounds
from meterd.rollup import Partial
from meterd.storage.base import Store
from meterd.storage.sqlite.store import SQLiteStore

DAY = 86_400_000
MINUTE = 60_000
# Monday 2025-03-03 00:00 UTC, and a period that starts 05:45 into it (UTC+05:45's
# midnight seen from UTC is 18:15 the day before; any 15-minute edge will do).
MONDAY = 1_740_960_000_000
BOUNDS = PeriodBounds(
    "span", MONDAY - 5 * 60 * MINUTE - 45 * MINUTE, MONDAY + 4 * DAY + 30 * MINUTE
)
# Whole UTC days, so the last compacted day is read from daily rows too.
WHOLE_DAYS = PeriodBounds("days", MONDAY - DAY, MONDAY + 5 * DAY)
OPS: tuple[Op, ...] = ("sum", "avg", "min", "max", "count", "first", "last")


def event(n: int, ts: int, value: float) -> NewEvent:
    return NewEvent(f"d{n}", "api.calls", "cust-d", value, None, ts, ts)


def naive(events: list[NewEvent], op: Op, bounds: PeriodBounds) -> int | float | Decimal:
    inside = [e for e in events if bounds.start_ms <= e.ts_ms < bounds.end_ms]
    values = [e.value for e in inside]
    total = sum((Decimal(repr(v)) for v in values), Decimal(0))
    if op == "sum":
        return total
    if op == "avg":
        return total / len(values)
    if op == "count":
        return len(values)
    if op == "min":
        return min(values)
    if op == "max":
        return max(values)
    # Ties in time go to arrival order: first keeps the earliest, last the latest.
    ordered = sorted(range(len(inside)), key=lambda i: inside[i].ts_ms)
    if op == "first":
        return values[ordered[0]]
    return values[max(ordered, key=lambda i: (inside[i].ts_ms, i))]


async def check(store: Store, events: list[NewEvent]) -> None:
    for bounds in (BOUNDS, WHOLE_DAYS):
        partial: Partial = (await store.customer_partials("cust-d", bounds))["api.calls"]
        for op in OPS:
            check_op(op, partial.value(op), naive(events, op, bounds))


def check_op(op: Op, got: int | float, want: int | float | Decimal) -> None:
    if op == "sum":
        assert Decimal(repr(got)) == want, op
    elif op == "avg":
        assert got == pytest.approx(float(want), rel=1e-15), op
    else:
        assert got == want, op


async def test_compacted_days_late_events_and_rebuild_agree(open_store: Store) -> None:
    store = open_store
    events = []
    values = [0.1, 7, -2.5, 1e-9, 42, 0.2, 3]
    for n in range(120):
        # Every 50 minutes from the day before the period to the day after it.
        ts = BOUNDS.start_ms - DAY + n * 50 * MINUTE
        events.append(event(n, ts, values[n % len(values)]))
    events.append(event(500, BOUNDS.start_ms, 99))  # the very first instant
    events.append(event(501, BOUNDS.end_ms - 1, -99))  # the very last one
    events.append(event(502, BOUNDS.end_ms, 1000))  # just outside
    assert all(await store.ingest(events))
    await check(store, events)

    assert await store.compact_rollups(BOUNDS.end_ms + DAY) >= 0
    await check(store, events)

    # Late events on compacted days: a new minimum, a tie with the first event's
    # instant (arrives later, so it is not the first), a new last on an inner day.
    late = [
        event(600, MONDAY + DAY + 7 * MINUTE, -1e6),
        event(601, BOUNDS.start_ms, 5),
        event(602, MONDAY + 2 * DAY + 3 * MINUTE, 0.3),
        event(603, MONDAY + 4 * DAY + 60 * MINUTE, 1e6),  # the last compacted day
    ]
    assert all(await store.ingest(late))
    events += late
    await check(store, events)
    assert await store.compact_rollups(BOUNDS.end_ms + DAY) == 0
    await check(store, events)

    assert await store.rebuild_rollups() == len(events)
    await check(store, events)
    await store.compact_rollups(BOUNDS.end_ms + DAY)
    await check(store, events)


async def test_sqlite_reads_whole_compacted_days_from_daily_rows(tmp_path: object) -> None:
    path = f"{tmp_path}/daily.db"
    store = SQLiteStore(path)
    await store.open()
    try:
        events = [event(n, MONDAY + n * 15 * MINUTE, 1) for n in range(4 * 96)]
        assert all(await store.ingest(events))
        assert await store.compact_rollups(MONDAY + 4 * DAY) == 4
        assert await store.compact_rollups(MONDAY + 4 * DAY) == 0
        with sqlite3.connect(path) as conn:
            daily = conn.execute("SELECT bucket, count FROM daily_rollups ORDER BY bucket")
            assert daily.fetchall() == [(MONDAY // DAY + d, 96) for d in range(4)]
        await check(store, events)
    finally:
        await store.close()
