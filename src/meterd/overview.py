"""The operator's overview: recent events, customers, open periods, the outbox's state."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from meterd.periods import PeriodBounds, PeriodCalendar
from meterd.storage.base import Store

HOUR_MS = 3_600_000
RECENT_HOURS = 24
# Customers are counted up to this many; beyond, the overview says "at least".
CUSTOMER_COUNT_LIMIT = 1000


class OpenPeriod(msgspec.Struct, frozen=True):
    """A configured period: the one in progress now, and how far closing has come."""

    name: str
    current: PeriodBounds
    closed_until_ms: int | None


class Overview(msgspec.Struct, frozen=True):
    hourly_events: list[tuple[int, int]]  # (hour start ms, events), oldest first
    customers: int
    customers_capped: bool
    periods: list[OpenPeriod]
    deliveries_pending: int
    deliveries_failed: int


async def overview(
    store: Store, *, calendars: Mapping[str, PeriodCalendar], now_ms: int
) -> Overview:
    """What the operator sees first, read in a handful of indexed queries."""
    end = (now_ms // HOUR_MS + 1) * HOUR_MS
    start = end - RECENT_HOURS * HOUR_MS
    per_hour = dict.fromkeys(range(start, end, HOUR_MS), 0)
    for bucket_ms, count in await store.event_counts(from_ms=start, to_ms=end):
        per_hour[bucket_ms - bucket_ms % HOUR_MS] += count
    ids = await store.list_customer_ids(search=None, after="", limit=CUSTOMER_COUNT_LIMIT + 1)
    periods = [
        OpenPeriod(name, calendar.bounds_at(now_ms), await store.watermark(name))
        for name, calendar in calendars.items()
    ]
    return Overview(
        hourly_events=sorted(per_hour.items()),
        customers=min(len(ids), CUSTOMER_COUNT_LIMIT),
        customers_capped=len(ids) > CUSTOMER_COUNT_LIMIT,
        periods=periods,
        deliveries_pending=await store.count_deliveries("pending"),
        deliveries_failed=await store.count_deliveries("failed"),
    )
