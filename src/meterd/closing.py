"""Closing completed periods, refreshing open ones, and the scheduler that does it."""

from __future__ import annotations

import logging
from collections.abc import Callable

import msgspec

from meterd.aggregation import calendars_for, meters_for, ops_for
from meterd.background import Periodic
from meterd.config.model import SystemConfig
from meterd.ingest import MAX_FUTURE_MS
from meterd.invoices import period_invoicing
from meterd.metrics import Metrics
from meterd.periods import PeriodCalendar
from meterd.storage.base import Store
from meterd.timeutil import now_ms

log = logging.getLogger("meterd.closing")


class AggregationCounts(msgspec.Struct):
    closed: int = 0
    open: int = 0
    # Records written again because late events or corrections changed them.
    revised: int = 0


class PeriodCloser:
    """Writes aggregation records: final ones for completed periods, live ones on demand."""

    def __init__(self, store: Store, config: SystemConfig, metrics: Metrics | None = None) -> None:
        self.store = store
        self.metrics = metrics
        self.grace_ms = config.grace_period_ms
        self.calendars = calendars_for(config)
        self.ops = ops_for(config)
        self.meters = meters_for(config)
        self.webhooks = config.webhooks
        self.invoicing = period_invoicing(config, stripe=config.invoicing.stripe is not None)
        # A time-weighted level carries into periods without events: none may be skipped.
        self.carries_levels = any(m.op == "time_weighted_avg" for m in self.meters.values())

    async def close_completed(self, now: int) -> int:
        """Close every period that ended at least the grace period before `now`, then
        revise what late events and corrections changed; the records written."""
        closed = await self._close_periods(now)
        return closed + await self.revise_touched(now)

    async def revise_touched(self, now: int) -> int:
        """Recompute the records late events and corrections touched (DESIGN.md section 8):
        revision n+1 and `aggregation.adjusted` for each closed record that changed."""
        revised = await self.store.settle_late_changes(
            calendars=self.calendars,
            ops=self.ops,
            webhooks=self.webhooks,
            now_ms=now,
            invoicing=self.invoicing,
            meters=self.meters,
        )
        if revised:
            log.info(
                "late events and corrections: wrote %d records and revisions",
                revised,
                extra={"revised": revised},
            )
        return revised

    async def _close_periods(self, now: int) -> int:
        """Close every period that ended at least the grace period before `now`.

        Idempotent: a period already closed is skipped, and within a period a
        closed record is never rewritten. Periods with no events are skipped.
        """
        return sum((await self.close_round(now)).values())

    async def close_round(self, now: int) -> dict[str, int]:
        """`close_completed`, with the records closed per period name (only those closed)."""
        cutoff = now - self.grace_ms
        await self.store.compact_rollups(cutoff)
        closed: dict[str, int] = {}
        for calendar in self.calendars.values():
            count = await self._close_calendar(calendar, cutoff, now)
            if count:
                closed[calendar.name] = count
        if closed:
            records = sum(closed.values())
            if self.metrics is not None:
                self.metrics.closed(records)
            periods = ", ".join(f"{name} {count}" for name, count in closed.items())
            log.info(
                "close round: closed %d aggregation records (%s)",
                records,
                periods,
                extra={"records": records, "periods": closed},
            )
        return closed

    async def _close_calendar(self, calendar: PeriodCalendar, cutoff: int, now: int) -> int:
        closed = 0
        watermark = await self.store.watermark(calendar.name)
        while True:
            first = await self.store.first_data_ms(watermark)
            if self.carries_levels and watermark is not None:
                first = watermark
            if first is None:
                return closed
            bounds = calendar.bounds_at(first if watermark is None else max(first, watermark))
            if bounds.end_ms > cutoff:
                return closed
            closed += await self.store.write_period(
                period=calendar.name,
                bounds=bounds,
                ops=self.ops,
                status="closed",
                now_ms=now,
                webhooks=self.webhooks,
                invoicing=self.invoicing,
                meters=self.meters,
            )
            watermark = await self.store.watermark(calendar.name)
            if watermark is None or watermark < bounds.end_ms:
                # Another process is closing this period (PostgreSQL): it goes on to the
                # later ones. Skipping past it could close a later period first and move
                # the watermark over this one.
                return closed

    async def refresh_open(self, now: int) -> int:
        """Write `open` records for every period not closed yet that has events."""
        written = 0
        for calendar in self.calendars.values():
            watermark = await self.store.watermark(calendar.name)
            start = await self.store.first_data_ms(watermark)
            if self.carries_levels and watermark is not None:
                start = watermark
            if start is None:
                continue
            for bounds in calendar.bounds_between(start, now + MAX_FUTURE_MS + 1):
                written += await self.store.write_period(
                    period=calendar.name,
                    bounds=bounds,
                    ops=self.ops,
                    status="open",
                    now_ms=now,
                    meters=self.meters,
                )
        return written

    async def trigger(self, now: int) -> AggregationCounts:
        """Aggregate every period now: close the completed ones, refresh the open ones."""
        closed = await self._close_periods(now)
        revised = await self.revise_touched(now)
        return AggregationCounts(closed=closed, revised=revised, open=await self.refresh_open(now))


class CloseScheduler(Periodic):
    """Runs `close_completed` every `interval_s` seconds inside `meterd serve`: closes
    completed periods, then revises what late events and corrections touched."""

    def __init__(
        self,
        closer: PeriodCloser,
        interval_s: float,
        *,
        on_closed: Callable[[], None] = lambda: None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.closer = closer
        super().__init__(
            "meterd-close-scheduler",
            closer.close_completed,
            interval_s,
            on_done=on_closed,
            clock=clock,
            failure="closing periods failed",
        )
