"""Alert thresholds in the config, and the pure limit rules (limits.py)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
import pytest

from meterd.config.loader import ConfigError, parse_config
from meterd.config.plans import Plan
from meterd.limits import Limit, crossed, has_access, limits_of, remaining

OUT_OF_RANGE = "is out of range: a threshold is more than 0 and at most 1000 (%)"
BASE: dict[str, Any] = {"periods": ["daily", "monthly"], "events": {"api.calls": {"op": "sum"}}}


def parse(**extra: Any) -> Any:
    return parse_config(msgspec.json.encode(BASE | extra), "systemconfig.json")


def test_alert_thresholds_default_to_80_and_100() -> None:
    assert parse().alert_thresholds == (80.0, 100.0)
    assert parse(alertThresholds=[100, 50, 75.5]).alert_thresholds == (50.0, 75.5, 100.0)
    assert parse(alertThresholds=[]).alert_thresholds == ()


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (80, "alertThresholds: expected an array, got 80"),
        ([0], f"alertThresholds[0]: 0 {OUT_OF_RANGE}"),
        ([1001], f"alertThresholds[0]: 1001 {OUT_OF_RANGE}"),
        (["80"], 'alertThresholds[0]: expected a number, got "80"'),
        ([90, 90], "alertThresholds: a threshold is listed twice"),
    ],
)
def test_bad_alert_thresholds_name_the_key(value: object, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(alertThresholds=value)
    assert [str(p) for p in caught.value.problems] == [problem]


def plan(**allowances: int | str) -> Plan:
    return Plan(
        name="pro",
        currency="usd",
        period="monthly",
        base_fee=Decimal(0),
        minimum=Decimal(0),
        charges={},
        allowances={meter: Decimal(a) for meter, a in allowances.items()},
    )


def test_customer_limits_win_over_plan_allowances() -> None:
    allowances: dict[str, int | str] = {"api.calls": 100000, "llm.tokens": "2.5"}
    own = msgspec.json.encode(
        {"api.calls": {"period": "daily", "limit": 10, "alertThresholds": [100, 50]}}
    )
    found = limits_of(customer_limits=own, plan=plan(**allowances), thresholds=(80.0, 100.0))
    assert found == {
        "api.calls": Limit("api.calls", "daily", 10, (50.0, 100.0)),
        "llm.tokens": Limit("llm.tokens", "monthly", 2.5, (80.0, 100.0)),
    }
    assert limits_of(customer_limits=None, plan=None, thresholds=(80.0,)) == {}


def test_thresholds_are_reached_at_their_percentage_of_the_limit() -> None:
    limit = Limit("api.calls", "monthly", 10, (80.0, 100.0))
    assert crossed(limit, 7.9) == []
    assert crossed(limit, 8) == [80.0]
    assert crossed(limit, 10) == [80.0, 100.0]
    assert (has_access(limit, 9.9), has_access(limit, 10), has_access(None, 10**9)) == (
        True,
        False,
        True,
    )
    assert (remaining(limit, 4), remaining(limit, 12), remaining(None, 4)) == (6, 0, None)
