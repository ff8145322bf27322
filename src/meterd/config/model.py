"""The validated, immutable form of `systemconfig.json`.

Durations are held as integer milliseconds, times as epoch milliseconds (UTC).
"""

from __future__ import annotations

from typing import Literal

import msgspec

Op = Literal["sum", "avg", "min", "max", "count", "first", "last"]
OPS: tuple[Op, ...] = ("sum", "avg", "min", "max", "count", "first", "last")

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
    op: Op


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
    source: str = "<built-in sample>"

    def period(self, name: str) -> PeriodConfig | None:
        for period in self.periods:
            if period.name == name:
                return period
        return None
