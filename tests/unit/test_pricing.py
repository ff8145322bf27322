"""Pricing against invoices computed by hand: every model, tier edges, minimums, currencies."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from meterd.config.plans import Plan, parse_plans
from meterd.pricing import GroupUsage, price_plan, round_money, to_minor_units

METERS = ("api.calls", "storage.bytes", "compute.seconds", "llm.tokens")


def plan(**fields: Any) -> Plan:
    document = {"currency": "usd", "period": "monthly", **fields}
    plans, problems = parse_plans({"p": document}, meters=METERS, periods=("monthly",))
    assert not problems, problems
    return plans["p"]


def amounts(priced_plan: Plan, **usage: float) -> list[tuple[str, Decimal]]:
    priced = price_plan(priced_plan, usage={k.replace("_", "."): v for k, v in usage.items()})
    return [(line.meter or line.kind, line.amount) for line in priced.lines]


def total(priced_plan: Plan, **usage: float) -> Decimal:
    return price_plan(priced_plan, usage={k.replace("_", "."): v for k, v in usage.items()}).total


def test_the_design_example_invoice() -> None:
    pro = plan(
        baseFee="49.00",
        minimum="10.00",
        charges={
            "api.calls": {
                "model": "graduated",
                "tiers": [{"upTo": 10000, "unitPrice": "0"}, {"upTo": None, "unitPrice": "0.001"}],
            },
            "storage.bytes": {"model": "per_unit", "unitPrice": "0.00000001"},
            "compute.seconds": {
                "model": "volume",
                "tiers": [
                    {"upTo": 3600, "unitPrice": "0.0002"},
                    {"upTo": None, "unitPrice": "0.0001"},
                ],
            },
            "llm.tokens": {"model": "package", "packageSize": 1000, "packagePrice": "0.002"},
        },
    )
    priced = price_plan(
        pro,
        usage={
            "api.calls": 15420,
            "storage.bytes": 2_000_000_000,
            "compute.seconds": 4000,
            "llm.tokens": 12345,
        },
    )
    # 49 + 5420 × 0.001 + 2e9 × 1e-8 + 4000 × 0.0001 + 13 packages × 0.002 (0.026 → 0.03)
    assert [(line.kind, line.meter, line.amount) for line in priced.lines] == [
        ("base_fee", None, Decimal("49.00")),
        ("usage", "api.calls", Decimal("5.42")),
        ("usage", "storage.bytes", Decimal("20.00")),
        ("usage", "compute.seconds", Decimal("0.40")),
        ("usage", "llm.tokens", Decimal("0.03")),
    ]
    assert priced.total == Decimal("74.85")
    assert to_minor_units(priced.total, "usd") == 7485
    graduated = priced.lines[1]
    assert graduated.tiers is not None
    assert [(t.from_, t.up_to, t.quantity, t.amount) for t in graduated.tiers] == [
        (Decimal(0), 10000, Decimal(10000), Decimal(0)),
        (Decimal(10000), None, Decimal(5420), Decimal("5.420")),
    ]
    package = priced.lines[4]
    assert (package.packages, package.package_size) == (Decimal(13), 1000)


def test_per_unit_rounds_each_line_half_up() -> None:
    per_unit = plan(charges={"api.calls": {"model": "per_unit", "unitPrice": "0.001"}})
    assert amounts(per_unit, api_calls=1224) == [("api.calls", Decimal("1.22"))]
    # 1.225 rounds up (banker's rounding would give 1.22).
    assert amounts(per_unit, api_calls=1225) == [("api.calls", Decimal("1.23"))]
    # Event values may be fractional: 0.1 + 0.2 summed exactly is 0.3.
    assert amounts(per_unit, api_calls=0.3) == [("api.calls", Decimal("0.00"))]


GRADUATED = {
    "model": "graduated",
    "tiers": [
        {"upTo": 10000, "unitPrice": "0"},
        {"upTo": 50000, "unitPrice": "0.001", "flatPrice": "2.00"},
        {"upTo": None, "unitPrice": "0.0005"},
    ],
}


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [
        (0, "0.00"),
        (10000, "0.00"),  # exactly at upTo: all in the free tier, its flat price not reached
        (10001, "2.00"),  # 1 × 0.001 + 2.00 flat = 2.001
        (50000, "42.00"),  # 40000 × 0.001 + 2.00
        (60000, "47.00"),  # 40 + 2 + 10000 × 0.0005
    ],
)
def test_graduated_prices_each_part_in_its_tier(quantity: int, expected: str) -> None:
    graduated = plan(charges={"api.calls": GRADUATED})
    assert amounts(graduated, api_calls=quantity) == [("api.calls", Decimal(expected))]


VOLUME = {
    "model": "volume",
    "tiers": [{"upTo": 3600, "unitPrice": "0.0002"}, {"upTo": None, "unitPrice": "0.0001"}],
}


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [
        (0, "0.00"),
        (3600, "0.72"),  # exactly at upTo: all 3600 at the first tier's price
        (3601, "0.36"),  # 3601 × 0.0001 = 0.3601: all units at the second tier's price
        (100000, "10.00"),
    ],
)
def test_volume_prices_everything_at_the_reached_tier(quantity: int, expected: str) -> None:
    volume = plan(charges={"compute.seconds": VOLUME})
    assert amounts(volume, compute_seconds=quantity) == [("compute.seconds", Decimal(expected))]


@pytest.mark.parametrize(
    ("quantity", "packages", "expected"),
    [(0, 0, "0.000"), (1, 1, "0.002"), (1000, 1, "0.002"), (1001, 2, "0.004"), (2500, 3, "0.006")],
)
def test_package_counts_started_packages(quantity: int, packages: int, expected: str) -> None:
    # kwd has three decimals, so a 0.002 package price shows unrounded.
    package = plan(
        currency="kwd",
        charges={"llm.tokens": {"model": "package", "packageSize": 1000, "packagePrice": "0.002"}},
    )
    priced = price_plan(package, usage={"llm.tokens": quantity})
    [line] = priced.lines
    assert line.packages == packages
    assert line.amount == Decimal(expected)
    assert to_minor_units(priced.total, "kwd") == packages * 2


def test_the_minimum_raises_the_total_with_a_line_of_its_own() -> None:
    minimum = plan(
        minimum="10.00", charges={"api.calls": {"model": "per_unit", "unitPrice": "0.001"}}
    )
    priced = price_plan(minimum, usage={"api.calls": 1225})
    assert [(line.kind, line.amount) for line in priced.lines] == [
        ("usage", Decimal("1.23")),
        ("minimum", Decimal("8.77")),
    ]
    assert priced.total == Decimal("10.00")
    # Above the minimum, no minimum line.
    assert total(minimum, api_calls=12000) == Decimal("12.00")
    assert [line.kind for line in price_plan(minimum, usage={"api.calls": 12000}).lines] == [
        "usage"
    ]


def test_zero_usage_costs_the_base_fee_or_the_minimum() -> None:
    base = plan(baseFee="49", charges={"api.calls": GRADUATED})
    priced = price_plan(base, usage={})
    assert [(line.kind, line.amount) for line in priced.lines] == [
        ("base_fee", Decimal("49.00")),
        ("usage", Decimal("0.00")),
    ]
    assert priced.total == Decimal("49.00")
    assert total(plan(minimum="5"), api_calls=0) == Decimal("5.00")
    assert price_plan(plan(), usage={}).lines == ()


@pytest.mark.parametrize(
    ("currency", "price", "quantity", "amount", "minor"),
    [
        ("jpy", "1.5", 3, "5", 5),  # 4.5 yen rounds half-up to 5
        ("jpy", "1.5", 1, "2", 2),
        ("usd", "0.015", 3, "0.05", 5),  # 0.045 → 0.05
        ("eur", "0.0149", 3, "0.04", 4),  # 0.0447 → 0.04
        ("kwd", "0.0015", 3, "0.005", 5),  # 0.0045 → 0.005
        ("kwd", "0.0014", 3, "0.004", 4),  # 0.0042 → 0.004
    ],
)
def test_currencies_round_to_their_minor_unit(
    currency: str, price: str, quantity: int, amount: str, minor: int
) -> None:
    priced = price_plan(
        plan(currency=currency, charges={"api.calls": {"model": "per_unit", "unitPrice": price}}),
        usage={"api.calls": quantity},
    )
    assert priced.total == Decimal(amount)
    assert str(priced.total) == amount
    assert to_minor_units(priced.total, currency) == minor


def test_the_total_is_the_sum_of_rounded_lines() -> None:
    # Two lines of 0.005 each: rounded per line 0.01 + 0.01, not round(0.010) = 0.01.
    two = plan(
        charges={
            "api.calls": {"model": "per_unit", "unitPrice": "0.005"},
            "storage.bytes": {"model": "per_unit", "unitPrice": "0.005"},
        }
    )
    assert total(two, api_calls=1, storage_bytes=1) == Decimal("0.02")


def test_groups_with_their_own_price_get_lines_of_their_own() -> None:
    tokens = plan(
        charges={
            "llm.tokens": {
                "model": "package",
                "packageSize": 1000,
                "packagePrice": "0.002",
                "byGroup": {"model": {"gpt-4o": {"packagePrice": "0.01"}}},
            }
        }
    )
    priced = price_plan(
        tokens,
        usage={"llm.tokens": 2700},
        groups={
            "llm.tokens": [
                GroupUsage({"model": "gpt-4o"}, 1500),
                GroupUsage({"model": "mini"}, 500),
                GroupUsage({"model": None}, 700),
            ]
        },
    )
    # gpt-4o: 2 packages × 0.01; the others together: 1200 → 2 packages × 0.002 = 0.004.
    assert [(line.dimensions, line.amount) for line in priced.lines] == [
        ({"model": "gpt-4o"}, Decimal("0.02")),
        (None, Decimal("0.00")),
    ]
    assert priced.lines[1].quantity == 1200
    # Without groups the meter's total is priced at the charge's own price.
    assert total(tokens, llm_tokens=2700) == Decimal("0.01")


def test_round_money_is_half_up_away_from_zero() -> None:
    assert round_money(Decimal("-0.005"), "usd") == Decimal("-0.01")
    assert round_money(Decimal("2.5"), "jpy") == Decimal("3")
