"""Plans for tests, written as in systemconfig.json and parsed by meterd's own loader."""

from __future__ import annotations

import asyncio
from typing import Any

from meterd.closing import PeriodCloser
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


async def close_until_done(closer: PeriodCloser, at: int) -> None:
    """Close every period completed by `at`.

    A round skips a period whose close lock another process holds; on a PostgreSQL
    shared by concurrent test runs (other schemas) that lock can be theirs, so retry.
    """
    for _ in range(200):
        await closer.close_completed(at)
        if not await _anything_left(closer, at):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("periods stayed open")


async def _anything_left(closer: PeriodCloser, at: int) -> bool:
    cutoff = at - closer.grace_ms
    for calendar in closer.calendars.values():
        mark = await closer.store.watermark(calendar.name)
        first = await closer.store.first_data_ms(mark)
        if first is None:
            continue
        if calendar.bounds_at(first if mark is None else max(first, mark)).end_ms <= cutoff:
            return True
    return False
