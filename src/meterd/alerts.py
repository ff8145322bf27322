"""Usage alerts: `usage.threshold_crossed` once per customer, meter, period and threshold.

Ingest marks the (customer, meter) pairs it touched for customers with limits; each
round reads only those, compares live usage with the limit in the period containing
the round's time (and the one running `lookback` before it, so a crossing just before a
period ends, or a late event within the grace period, still alerts), and records every
threshold reached. The alert table's unique key
makes each alert (and its outbox rows, written in the same transaction) happen once,
whichever process or round finds it first, across restarts.

Corrections: once per period is the rule. A threshold crossed, then undercut by a
correction and reached again in the same period does not alert a second time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from meterd.aggregation import calendars_for, ops_for
from meterd.background import Periodic
from meterd.config.model import SystemConfig
from meterd.entitlements import limits_for, live_usage
from meterd.limits import Limit, UsageAlert, crossed
from meterd.messages import Outgoing, threshold_outgoing
from meterd.periods import PeriodBounds
from meterd.storage.base import Store, TouchedMeter
from meterd.timeutil import now_ms

log = logging.getLogger("meterd.alerts")

CHECK_BATCH = 500
MAX_BATCHES_PER_ROUND = 200
# A round also checks the period that was running this long before it (plus the grace
# period), so a crossing just before a period ends is not lost to the next period.
DEFAULT_LOOKBACK_MS = 5 * 60_000


class AlertChecker:
    """Finds the thresholds crossed since the last round and records them with their webhooks."""

    def __init__(
        self, store: Store, config: SystemConfig, *, lookback_ms: int = DEFAULT_LOOKBACK_MS
    ) -> None:
        self.store = store
        self.config = config
        self.calendars = calendars_for(config)
        self.ops = ops_for(config)
        # Set it to at least the scheduler interval: a round then sees every period that
        # was running since the previous round, and late events within the grace period.
        self.lookback_ms = lookback_ms + config.grace_period_ms

    async def sync(self) -> int:
        """Watch exactly the customers with limits now (after a start or a config change)."""
        plans = [name for name, plan in self.config.plans.items() if plan.allowances]
        return await self.store.sync_watched(plans_with_allowances=plans)

    async def check(self, now: int, *, batch: int = CHECK_BATCH) -> int:
        """One round: every touched (customer, meter), in order; returns new alerts."""
        new = 0
        after: tuple[str, str] | None = None
        for _ in range(MAX_BATCHES_PER_ROUND):
            touched = await self.store.touched_meters(after=after, limit=batch)
            if not touched:
                break
            alerts = await self._alerts_for(touched, now)
            new += await self.store.record_alerts(alerts, checked=touched)
            if len(touched) < batch:
                break
            after = (touched[-1].customer_id, touched[-1].meter)
        return new

    async def _alerts_for(
        self, touched: Sequence[TouchedMeter], now: int
    ) -> list[tuple[UsageAlert, list[Outgoing]]]:
        by_customer: dict[str, list[str]] = {}
        for item in touched:
            by_customer.setdefault(item.customer_id, []).append(item.meter)
        found = []
        for customer_id, meters in by_customer.items():
            customer = await self.store.get_customer(customer_id)
            limits = limits_for(customer, config=self.config, now_ms=now)
            wanted = [
                limits[meter]
                for meter in meters
                if meter in limits and limits[meter].period in self.calendars
            ]
            for period in sorted({limit.period for limit in wanted}):
                calendar = self.calendars[period]
                recent = {calendar.bounds_at(now - self.lookback_ms), calendar.bounds_at(now)}
                for bounds in sorted(recent):
                    values = await live_usage(
                        self.store,
                        customer_id=customer_id,
                        period=period,
                        bounds=bounds,
                        ops=self.ops,
                        now_ms=now,
                    )
                    for limit in (limit for limit in wanted if limit.period == period):
                        found += self._crossings(customer_id, limit, bounds, values, now)
        return found

    def _crossings(
        self,
        customer_id: str,
        limit: Limit,
        bounds: PeriodBounds,
        values: Mapping[str, int | float],
        now: int,
    ) -> list[tuple[UsageAlert, list[Outgoing]]]:
        usage = values.get(limit.meter, 0)
        found = []
        for threshold in crossed(limit, usage):
            alert = UsageAlert(
                customer_id=customer_id,
                meter=limit.meter,
                period=limit.period,
                period_start_ms=bounds.start_ms,
                period_end_ms=bounds.end_ms,
                threshold=threshold,
                usage=usage,
                limit=limit.limit,
                created_ms=now,
            )
            found.append((alert, threshold_outgoing(alert, self.config.webhooks)))
        return found


class AlertScheduler(Periodic):
    """Runs `AlertChecker.check` every `interval_s` seconds inside `meterd serve`."""

    def __init__(
        self,
        checker: AlertChecker,
        interval_s: float,
        *,
        on_alerts: Callable[[], None] = lambda: None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.checker = checker
        super().__init__(
            "meterd-alert-scheduler",
            self._check,
            interval_s,
            on_done=on_alerts,
            clock=clock,
            failure="checking usage alerts failed",
        )

    async def _check(self, at_ms: int) -> int:
        found = await self.checker.check(at_ms)
        if found:
            log.info("recorded %d usage alerts", found)
        return found
