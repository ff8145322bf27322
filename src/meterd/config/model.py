"""The validated, immutable form of `systemconfig.json`.

Durations are held as integer milliseconds, times as epoch milliseconds (UTC).
"""

from __future__ import annotations

from typing import Literal

import msgspec

from meterd.config.alerts import DEFAULT_ALERT_THRESHOLDS
from meterd.config.plans import InvoicingConfig, Plan
from meterd.config.portal import PortalConfig

FoldableOp = Literal["sum", "avg", "min", "max", "count", "first", "last"]
FOLDABLE_OPS: tuple[FoldableOp, ...] = ("sum", "avg", "min", "max", "count", "first", "last")
# Ops that rollup partials cannot fold: computed from raw events (meterd.meters.values).
EventOp = Literal["unique_count", "percentile", "time_weighted_avg"]
EVENT_OPS: tuple[EventOp, ...] = ("unique_count", "percentile", "time_weighted_avg")
Op = Literal[
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "first",
    "last",
    "unique_count",
    "percentile",
    "time_weighted_avg",
]
OPS: tuple[Op, ...] = (*FOLDABLE_OPS, *EVENT_OPS)

# What ingest does with body fields it does not know: refuse them (400/422) or skip them.
UnknownFields = Literal["reject", "ignore"]

CalendarPeriod = Literal["hourly", "daily", "weekly", "monthly", "yearly"]
CALENDAR_PERIODS: tuple[CalendarPeriod, ...] = ("hourly", "daily", "weekly", "monthly", "yearly")

DEFAULT_RETRY_SCHEDULE_MS: tuple[int, ...] = (
    5_000,
    300_000,
    1_800_000,
    7_200_000,
    18_000_000,
    36_000_000,
    36_000_000,
    86_400_000,
)


class PeriodConfig(msgspec.Struct, frozen=True):
    """One billing period.

    Calendar periods have `every_ms` and `anchor_ms` unset; custom periods
    (`{"name": "30d", "every": "30d", "anchor": "..."}`) have both set.
    """

    name: str
    every_ms: int | None = None
    anchor_ms: int | None = None

    @property
    def is_calendar(self) -> bool:
        return self.every_ms is None


class EventTypeConfig(msgspec.Struct, frozen=True):
    """One meter (DESIGN §6); built and checked by `config/meters.py`."""

    op: Op
    group_by: tuple[str, ...] = ()
    property_key: str | None = None  # unique_count: the metadata key (config "property")
    percentile: float | None = None  # percentile: 0 < p <= 100
    # OpenMeter-compatible API (config/openmeter.py): where a CloudEvent's data holds
    # the value (None: "$.value", or nothing for count), and the meter's slug.
    value_property: str | None = None
    slug: str | None = None

    @property
    def reads_events(self) -> bool:
        """True when rollup partials cannot give its values: grouped, or an event op."""
        return bool(self.group_by) or self.op in EVENT_OPS


class WebhookConfig(msgspec.Struct, frozen=True):
    url: str
    secrets: tuple[str, ...]
    enabled: bool = True
    periods: tuple[str, ...] | None = None
    retry_schedule_ms: tuple[int, ...] = DEFAULT_RETRY_SCHEDULE_MS


class SystemConfig(msgspec.Struct, frozen=True):
    periods: tuple[PeriodConfig, ...]
    events: dict[str, EventTypeConfig]
    webhooks: tuple[WebhookConfig, ...] = ()
    timezone: str = "UTC"
    grace_period_ms: int = 0
    max_batch_size: int = 1000
    unknown_fields: UnknownFields = "reject"
    # Events older than this (by their timestamp, at arrival) are refused; None: any age.
    max_event_age_ms: int | None = None
    source: str = "<built-in sample>"
    plans: dict[str, Plan] = {}
    invoicing: InvoicingConfig = InvoicingConfig()
    portal: PortalConfig = PortalConfig()
    # Percent of a limit at which `usage.threshold_crossed` is sent (config/alerts.py).
    alert_thresholds: tuple[float, ...] = DEFAULT_ALERT_THRESHOLDS

    def period(self, name: str) -> PeriodConfig | None:
        for period in self.periods:
            if period.name == name:
                return period
        return None
