"""Exact sums survive storage: rollups, daily rollups, rebuild and records, on both backends."""

from __future__ import annotations

import sys
from decimal import Decimal
from fractions import Fraction

import pytest

from meterd.ingest import NewEvent
from meterd.periods import PeriodBounds
from meterd.storage.base import AggregationQuery, Store

pytestmark = pytest.mark.ingest_process

DAY = 86_400_000
MONDAY = 1_740_960_000_000  # 2025-03-03T00:00:00Z
WEEK = PeriodBounds("202510", MONDAY, MONDAY + 7 * DAY)
# Spread over several 15-minute buckets and days, so every fold (in one bucket, across
# buckets, through daily rows, in SQL and in Python) meets the extremes.
VALUES = [1e300, 1e-300, -1e300, sys.float_info.max, 5e-324, -sys.float_info.max, 0.1, 0.2, 1e-10]


def events() -> list[NewEvent]:
    return [
        NewEvent(
            f"x{i}", "api.calls", "cus-x", v, None, MONDAY + (i % 3) * DAY + i * 60_000, MONDAY
        )
        for i, v in enumerate(VALUES)
    ]


def truth() -> Fraction:
    return sum((Fraction(Decimal(repr(v))) for v in VALUES), Fraction(0))


async def live_sum(store: Store) -> Fraction:
    partial = (await store.customer_partials("cus-x", WEEK))["api.calls"]
    return Fraction(partial.sum)


async def test_extreme_values_sum_exactly_through_every_fold(open_store: Store) -> None:
    await open_store.ingest(events()[:4])
    await open_store.ingest(events()[4:])
    assert await live_sum(open_store) == truth()
    # Whole days folded into daily rows (SQLite; a no-op on PostgreSQL), then a late event.
    await open_store.compact_rollups(MONDAY + 6 * DAY)
    assert await live_sum(open_store) == truth()
    late = NewEvent("late", "api.calls", "cus-x", 3e-300, None, MONDAY + 60_000, MONDAY)
    await open_store.ingest([late])
    expected = truth() + Fraction(Decimal("3e-300"))
    assert await live_sum(open_store) == expected
    await open_store.rebuild_rollups()
    await open_store.compact_rollups(MONDAY + 6 * DAY)
    assert await live_sum(open_store) == expected


async def test_the_famous_case_in_one_bucket(open_store: Store) -> None:
    await open_store.ingest(
        [
            NewEvent(f"f{i}", "api.calls", "cus-f", v, None, MONDAY + i, MONDAY)
            for i, v in enumerate([1e300, 1e-300, -1e300])
        ]
    )
    partial = (await open_store.customer_partials("cus-f", WEEK))["api.calls"]
    assert partial.value("sum") == 1e-300
    written = await open_store.write_period(
        period="weekly", bounds=WEEK, ops={"api.calls": "sum"}, status="open", now_ms=MONDAY
    )
    assert written == 1
    [record] = await open_store.list_aggregations(AggregationQuery(customer_id="cus-f"))
    assert record.totals.events == {"api.calls": 1e-300}
