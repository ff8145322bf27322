"""Invalid plans stop meterd at start, each problem named by its JSON path."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from meterd.config.loader import ConfigError, parse_config

BASE: dict[str, Any] = {"periods": ["daily", "monthly"], "events": {"api.calls": {"op": "sum"}}}


def problems(**sections: Any) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        parse_config(json.dumps({**BASE, **sections}).encode(), "systemconfig.json")
    assert str(raised.value).startswith("systemconfig.json: cannot load config")
    return [str(problem) for problem in raised.value.problems]


def test_a_valid_plan_loads_with_exact_prices() -> None:
    document = {
        **BASE,
        "plans": {
            "pro": {
                "currency": "USD",
                "baseFee": "49.00",
                "minimum": 10,
                "charges": {
                    "api.calls": {
                        "model": "graduated",
                        "tiers": [
                            {"upTo": 10000, "unitPrice": "0"},
                            {"upTo": None, "unitPrice": 0.001},
                        ],
                    }
                },
                "allowances": {"api.calls": 100000},
            }
        },
        "invoicing": {"stripe": {"apiKey": "sk_test_x", "apiBase": "http://127.0.0.1:1/"}},
    }
    config = parse_config(json.dumps(document).encode(), "systemconfig.json")
    pro = config.plans["pro"]
    assert (pro.currency, pro.period, pro.base_fee, pro.minimum) == (
        "usd",
        "monthly",
        Decimal("49.00"),
        Decimal(10),
    )
    assert pro.charges["api.calls"].tiers[1].unit_price == Decimal("0.001")
    assert pro.allowances == {"api.calls": Decimal(100000)}
    assert config.invoicing.stripe is not None
    assert config.invoicing.stripe.api_base == "http://127.0.0.1:1"


def test_a_charge_for_an_unknown_meter() -> None:
    plans = {"pro": {"currency": "usd", "charges": {"nope": {"model": "per_unit", "unitPrice": 1}}}}
    assert problems(plans=plans) == [
        'plans.pro.charges.nope: "nope" is not a configured meter (events)'
    ]


def test_tiers_out_of_order_or_with_a_gap() -> None:
    tiers = [
        {"upTo": 100, "unitPrice": "1"},
        {"upTo": 100, "unitPrice": "1"},
        {"upTo": None, "unitPrice": "1"},
    ]
    charge = {"model": "volume", "tiers": tiers}
    assert problems(plans={"p": {"currency": "usd", "charges": {"api.calls": charge}}}) == [
        'plans.p.charges."api.calls".tiers[1].upTo: 100 is out of order: it must be greater'
        " than the previous tier's 100"
    ]
    gap = {"model": "graduated", "tiers": [{"upTo": 10, "unitPrice": "1"}]}
    assert problems(plans={"p": {"currency": "usd", "charges": {"api.calls": gap}}}) == [
        'plans.p.charges."api.calls".tiers[0].upTo: the last tier ends at 10, leaving a gap'
        " above it: make it null"
    ]
    early_end = {
        "model": "graduated",
        "tiers": [{"upTo": None, "unitPrice": "1"}, {"upTo": None, "unitPrice": "1"}],
    }
    assert problems(plans={"p": {"currency": "usd", "charges": {"api.calls": early_end}}}) == [
        'plans.p.charges."api.calls".tiers[0].upTo: null (no end) is only allowed on the last tier'
    ]


def test_negative_prices_unknown_currencies_models_and_periods() -> None:
    plans = {
        "a": {"currency": "usd", "baseFee": "-1"},
        "b": {"currency": "xyz"},
        "c": {"currency": "eur", "period": "yearly"},
        "d": {"currency": "eur", "charges": {"api.calls": {"model": "median"}}},
        "e": {"currency": "eur", "charges": {"api.calls": {"model": "per_unit"}}},
        "f": {"period": "daily"},
    }
    assert problems(plans=plans) == [
        'plans.a.baseFee: "-1" is negative: prices and amounts must be 0 or more',
        'plans.b.currency: "xyz" is not an ISO 4217 currency code like "usd"',
        'plans.c.period: "yearly" is not a configured period (daily, monthly)',
        'plans.d.charges."api.calls".model: "median" is not one of per_unit, graduated, volume,'
        " package",
        'plans.e.charges."api.calls".unitPrice: missing (required by model per_unit)',
        "plans.f.currency: missing (required)",
    ]


def test_invoicing_stripe_is_checked() -> None:
    assert problems(invoicing={"stripe": {"apiBase": "ftp://x", "key": "sk"}}) == [
        "invoicing.stripe.key: unknown key (expected one of apiKey, apiBase, autoAdvance)",
        "invoicing.stripe.apiBase: expected an http:// or https:// URL",
    ]
