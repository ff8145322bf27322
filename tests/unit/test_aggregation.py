"""Record ids: `{customerId}_{period}_{periodKey}` read back into customer, period, bounds."""

from __future__ import annotations

import pytest

from meterd.aggregation import split_aggregation_id
from meterd.config.model import PeriodConfig
from meterd.periods import PeriodCalendar
from meterd.timeutil import parse_iso_ms

DAY_MS = 86_400_000
AT = parse_iso_ms("2025-01-15T10:00:00Z")
DAILY = PeriodCalendar(PeriodConfig("daily"), "UTC")
X_DAILY = PeriodCalendar(PeriodConfig("x_daily", every_ms=DAY_MS, anchor_ms=0), "UTC")


@pytest.mark.parametrize(
    "order", [(DAILY, X_DAILY), (X_DAILY, DAILY)], ids=["daily first", "x_daily first"]
)
def test_the_longest_matching_period_name_wins(order: tuple[PeriodCalendar, ...]) -> None:
    # "cus_x_daily_K" ends in both "_daily" and "_x_daily": the period is x_daily, whatever
    # the configured order, and the customer is "cus".
    calendars = {calendar.name: calendar for calendar in order}
    for calendar in (X_DAILY, DAILY):
        bounds = calendar.bounds_at(AT)
        found = split_aggregation_id(f"cus_{calendar.name}_{bounds.key}", calendars)
        assert found == ("cus", calendar, bounds)


def test_customer_ids_may_hold_underscores() -> None:
    bounds = DAILY.bounds_at(AT)
    found = split_aggregation_id(f"cus_a_b_daily_{bounds.key}", {"daily": DAILY})
    assert found == ("cus_a_b", DAILY, bounds)
