"""A customer's live usage: the service HTTP, the CLI, the console and the portal call."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from meterd.aggregation import Status, Totals, totals_of
from meterd.config.model import EventTypeConfig, Op
from meterd.meters.usage import customer_totals
from meterd.meters.values import GroupValue
from meterd.periods import PeriodBounds, PeriodCalendar
from meterd.storage.base import Store
from meterd.timeutil import format_ms


class UsageOut(msgspec.Struct, rename="camel"):
    """Live values of one customer's period, computed from the rollups at `asOf`."""

    customer_id: str
    period: str
    period_key: str
    period_start: str
    period_end: str
    status: Status
    events: dict[str, int | float]
    event_counts: dict[str, int]
    event_count: int
    as_of: str
    groups: dict[str, list[GroupValue]] | msgspec.UnsetType = msgspec.UNSET


async def usage_of(
    store: Store,
    *,
    ops: Mapping[str, Op],
    customer_id: str,
    period: str,
    bounds: PeriodBounds,
    now_ms: int,
    meters: Mapping[str, EventTypeConfig] | None = None,
) -> UsageOut:
    """A customer's live values for one period: from the rollups, and for `meters` (those
    that read raw events, see `aggregation.meters_for`) from their events."""
    totals = await customer_totals(
        store, customer_id=customer_id, bounds=bounds, ops=ops, meters=meters or {}
    )
    watermark = await store.watermark(period)
    closed = watermark is not None and bounds.end_ms <= watermark
    return UsageOut(
        customer_id=customer_id,
        period=period,
        period_key=bounds.key,
        period_start=format_ms(bounds.start_ms),
        period_end=format_ms(bounds.last_ms),
        status="closed" if closed else "open",
        events=totals.events,
        event_counts=totals.event_counts,
        event_count=totals.event_count,
        as_of=format_ms(now_ms),
        groups=totals.groups or msgspec.UNSET,
    )


class PeriodUsage(msgspec.Struct, frozen=True):
    """One period of a customer's usage, for history charts."""

    bounds: PeriodBounds
    totals: Totals


async def usage_history(
    store: Store,
    *,
    ops: Mapping[str, Op],
    customer_id: str,
    calendar: PeriodCalendar,
    periods: int,
    now_ms: int,
) -> list[PeriodUsage]:
    """The customer's totals over the last `periods` periods of `calendar`, oldest first."""
    bounds = calendar.bounds_at(now_ms)
    spans = [bounds]
    for _ in range(periods - 1):
        bounds = calendar.previous_bounds(bounds)
        spans.append(bounds)
    history = []
    for span in reversed(spans):
        partials = await store.customer_partials(customer_id, span)
        history.append(PeriodUsage(span, totals_of(partials, ops)))
    return history
