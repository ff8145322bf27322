"""Plans for tests, written as in systemconfig.json and parsed by meterd's own loader."""

from __future__ import annotations

from typing import Any

from meterd.config.model import SystemConfig
from meterd.config.plans import Plan, parse_plans

PRO: dict[str, Any] = {
    "currency": "usd",
    "period": "monthly",
    "baseFee": "49.00",
    "minimum": "10.00",
    "charges": {
        "api.calls": {
            "model": "graduated",
            "tiers": [{"upTo": 10000, "unitPrice": "0"}, {"upTo": None, "unitPrice": "0.001"}],
        },
        "storage.bytes": {"model": "per_unit", "unitPrice": "0.00000001"},
    },
    "allowances": {"api.calls": 100000},
}
DAILY_JPY: dict[str, Any] = {
    "currency": "jpy",
    "period": "daily",
    "charges": {"api.calls": {"model": "per_unit", "unitPrice": "1.5"}},
}


def plans_for(config: SystemConfig, document: dict[str, Any]) -> dict[str, Plan]:
    plans, problems = parse_plans(
        document, meters=config.events.keys(), periods=[p.name for p in config.periods]
    )
    assert not problems, problems
    return plans
