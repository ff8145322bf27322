"""Several meterd processes on one PostgreSQL database: corrections racing on one event
have one winner, and each revision is written, with its one webhook, exactly once."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from meterd import corrections
from meterd.closing import PeriodCloser
from meterd.errors import Conflict
from meterd.ingest import NewEvent
from meterd.storage.base import AggregationQuery, KeyIdentity
from meterd.storage.postgres.store import PostgresStore
from meterd.timeutil import parse_iso_ms
from tests.conftest import make_config

KEY = KeyIdentity("test", "mk_test_")
DAY = parse_iso_ms("2025-01-15T10:00:00Z")
NOW = parse_iso_ms("2025-03-01T00:00:00Z")
CUSTOMERS = 30


@pytest.fixture
async def processes(postgres_url: str) -> AsyncIterator[list[PostgresStore]]:
    stores = [PostgresStore(postgres_url, pool_size=4) for _ in range(3)]
    for store in stores:
        await store.open()
    yield stores
    for store in stores:
        await store.close()


async def test_racing_corrections_and_settles_write_each_revision_once(
    processes: list[PostgresStore],
) -> None:
    config = make_config()
    first = processes[0]
    events = [
        NewEvent(f"e-{c}-{n}", "api.calls", f"cus_{c}", 10 * n + 1, None, DAY + n, DAY)
        for c in range(CUSTOMERS)
        for n in range(3)
    ]
    await first.ingest(events)
    closers = [PeriodCloser(store, config) for store in processes]
    await asyncio.gather(*(closer.close_completed(NOW) for closer in closers))

    # Every process tries to amend each customer's first event at once: one wins.
    async def amend(store: PostgresStore, event_id: str, value: int) -> str:
        body = json.dumps({"reason": "race", "value": value}).encode()
        try:
            await corrections.amend_event(
                store, event_id=event_id, body=body, key=KEY, idempotency_key=None, now_ms=NOW
            )
        except Conflict:
            return "conflict"
        return "amended"

    outcomes = await asyncio.gather(
        *(
            amend(store, f"e-{c}-0", 100 + index)
            for c in range(CUSTOMERS)
            for index, store in enumerate(processes)
        )
    )
    assert Counter(outcomes) == {"amended": CUSTOMERS, "conflict": 2 * CUSTOMERS}
    # Late events for half of the customers, sent through every process.
    late = [
        NewEvent(f"late-{c}", "api.calls", f"cus_{c}", 1000, None, DAY + 50, NOW)
        for c in range(0, CUSTOMERS, 2)
    ]
    await asyncio.gather(*(processes[i % 3].ingest([e]) for i, e in enumerate(late)))
    for _ in range(2):
        await asyncio.gather(*(closer.close_completed(NOW) for closer in closers))

    rows = await first.list_aggregations(AggregationQuery(limit=10_000))
    deliveries = await first.list_deliveries(status=None, limit=10_000, before_id=None)
    sent: dict[str, list[dict[str, object]]] = {}
    for delivery in sorted(deliveries, key=lambda d: d.id):
        sent.setdefault(delivery.aggregation_id, []).append(json.loads(delivery.payload))
    assert len(rows) == CUSTOMERS * 4  # hourly, daily, weekly, monthly
    for row in rows:
        customer = int(row.customer_id.removeprefix("cus_"))
        assert row.status == "closed" and row.revision >= 2, row
        total = row.totals.events["api.calls"]
        first_value = total - 11 - 21 - (1000 if customer % 2 == 0 else 0)
        assert 100 <= first_value <= 102, row
        messages = sent[row.id]
        types = [m["type"] for m in messages]
        assert types == ["aggregation.completed"] + ["aggregation.adjusted"] * (row.revision - 1)
        revisions = [m["data"]["revision"] for m in messages[1:]]  # type: ignore[index]
        assert revisions == list(range(2, row.revision + 1))
