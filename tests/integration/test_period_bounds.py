"""Events in the last and the first 15-minute bucket of a day land in their own day.

Both stores pick a period's rollups by bucket range in their own SQL; an off-by-one
bucket there moves an edge bucket into the neighbouring period.
"""

from __future__ import annotations

import pytest

from meterd.aggregation import calendars_for, ops_for, totals_of
from meterd.closing import PeriodCloser
from meterd.config.model import EventTypeConfig, PeriodConfig
from meterd.ingest import NewEvent
from meterd.storage.base import AggregationQuery, Store
from meterd.timeutil import parse_iso_ms
from tests.conftest import make_config

# Values are powers of two, so each day's sum says exactly which events it holds.
EDGES = {
    "2025-01-14T23:59:59.999Z": 1,  # the last bucket of the 14th
    "2025-01-15T00:00:00.000Z": 2,  # the first bucket of the 15th
    "2025-01-15T00:14:59.999Z": 4,
    "2025-01-15T23:45:00.000Z": 8,  # the last bucket of the 15th
    "2025-01-15T23:59:59.999Z": 16,
    "2025-01-16T00:00:00.000Z": 32,  # the first bucket of the 16th
}
EXPECTED = {"20250114": 1, "20250115": 2 + 4 + 8 + 16, "20250116": 32}


@pytest.mark.parametrize("timezone", ["UTC", "Europe/Oslo"])
async def test_edge_buckets_belong_to_their_own_day(open_store: Store, timezone: str) -> None:
    # In Oslo (UTC+1 in January) the same local edges sit an hour earlier in UTC.
    shift = 0 if timezone == "UTC" else 3_600_000
    config = make_config(
        periods=(PeriodConfig("daily"),),
        events={"t": EventTypeConfig("sum")},
        webhooks=(),
        timezone=timezone,
    )
    events = [
        NewEvent(f"e{value}", "t", "cus", float(value), None, parse_iso_ms(at) - shift, 0)
        for at, value in EDGES.items()
    ]
    assert await open_store.ingest(events) == [True] * len(events)

    daily = calendars_for(config)["daily"]
    for at, _ in list(EDGES.items())[:1] + list(EDGES.items())[-1:]:
        bounds = daily.bounds_at(parse_iso_ms(at) - shift)
        live = totals_of(await open_store.customer_partials("cus", bounds), ops_for(config))
        assert live.events == {"t": EXPECTED[bounds.key]}, bounds

    await PeriodCloser(open_store, config).close_completed(parse_iso_ms("2025-02-01T00:00:00Z"))
    rows = await open_store.list_aggregations(AggregationQuery(customer_id="cus"))
    assert {row.period_key: row.totals.events["t"] for row in rows} == EXPECTED
    middle = daily.bounds_at(parse_iso_ms("2025-01-15T12:00:00Z") - shift)
    live = totals_of(await open_store.customer_partials("cus", middle), ops_for(config))
    assert live.events == {"t": EXPECTED["20250115"]}
