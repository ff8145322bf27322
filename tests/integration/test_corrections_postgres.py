"""Several meterd processes on one PostgreSQL database: corrections racing on one event
have one winner, and each revision is written, with its one webhook, exactly once."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator

import psycopg
import pytest

from meterd import corrections
from meterd.closing import PeriodCloser
from meterd.config.model import EventTypeConfig, PeriodConfig
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


async def test_racing_settles_carry_levels_once(processes: list[PostgresStore]) -> None:
    # A time-weighted level reaches later periods: processes settling at once, with
    # overlapping reaches, still write each revision and its webhook exactly once.
    config = make_config(
        periods=(PeriodConfig("daily"),), events={"seats": EventTypeConfig("time_weighted_avg")}
    )

    def day(n: int, hour: int = 0) -> int:
        return parse_iso_ms(f"2025-01-{n:02d}T{hour:02d}:00:00Z")

    first = processes[0]
    await first.ingest(
        [
            NewEvent(f"s-{c}-{n}", "seats", f"cus_{c}", value, None, day(at), day(at))
            for c in range(CUSTOMERS)
            for n, (value, at) in enumerate(((10, 2), (4, 6)))
        ]
    )
    closers = [PeriodCloser(store, config) for store in processes]
    await asyncio.gather(*(closer.close_completed(day(10)) for closer in closers))
    winners: dict[int, float] = {}

    async def amend(store: PostgresStore, c: int, value: int) -> None:
        body = json.dumps({"reason": "race", "value": value}).encode()
        try:
            await corrections.amend_event(
                store, event_id=f"s-{c}-0", body=body, key=KEY, idempotency_key=None, now_ms=NOW
            )
        except Conflict:
            return
        assert c not in winners
        winners[c] = value

    await asyncio.gather(
        *(amend(store, c, 20 + i) for c in range(CUSTOMERS) for i, store in enumerate(processes))
    )
    # Even customers' level drops to 0 from the 7th at noon: a late event.
    late = [
        NewEvent(f"late-{c}", "seats", f"cus_{c}", 0, None, day(7, 12), NOW)
        for c in range(0, CUSTOMERS, 2)
    ]
    await asyncio.gather(*(processes[i % 3].ingest([e]) for i, e in enumerate(late)))
    for _ in range(2):
        await asyncio.gather(*(closer.close_completed(day(10, 1)) for closer in closers))

    rows = await first.list_aggregations(AggregationQuery(limit=10_000))
    deliveries = await first.list_deliveries(status=None, limit=10_000, before_id=None)
    sent: dict[str, list[str]] = {}
    for delivery in sorted(deliveries, key=lambda d: d.id):
        sent.setdefault(delivery.aggregation_id, []).append(json.loads(delivery.payload)["type"])
    assert len(winners) == CUSTOMERS and len(rows) == CUSTOMERS * 8
    for row in rows:
        c, key = int(row.customer_id.removeprefix("cus_")), int(row.period_key[-2:])
        dropped = c % 2 == 0
        want = {2: winners[c], 3: winners[c], 4: winners[c], 5: winners[c], 6: 4}.get(key)
        if key == 7:
            want = 2 if dropped else 4
        elif key >= 8:
            want = None if dropped else 4
        assert row.totals.events.get("seats") == want, row
        changed = key <= 5 or (dropped and key >= 7)
        assert row.revision == (2 if changed else 1), row
        assert sent[row.id] == ["aggregation.completed"] + ["aggregation.adjusted"] * (
            row.revision - 1
        )


async def test_a_settle_that_waited_for_a_record_sees_the_revision_written_meanwhile(
    processes: list[PostgresStore], postgres_url: str
) -> None:
    # Deterministic form of the race above: another process holds the record's lock and
    # writes revision 2 while this settle waits for it. After the wait the settle must see
    # revision 2 and write 3; a read whose snapshot predates the wait wrote 2 again.
    config = make_config(periods=(PeriodConfig("daily"),))
    first = processes[0]
    await first.ingest([NewEvent("e-1", "api.calls", "cus_1", 5, None, DAY, DAY)])
    closer = PeriodCloser(first, config)
    await closer.close_completed(NOW)
    [record] = await first.list_aggregations(AggregationQuery(limit=10))
    body = json.dumps({"reason": "typo", "value": 7}).encode()
    await corrections.amend_event(
        first, event_id="e-1", body=body, key=KEY, idempotency_key=None, now_ms=NOW
    )
    other = await psycopg.AsyncConnection.connect(postgres_url)
    try:
        await other.execute(b"SELECT 1 FROM aggregations WHERE id = %s FOR UPDATE", (record.id,))
        await other.execute(
            b"INSERT INTO aggregation_revisions (aggregation_id, revision, totals, created_at)"
            b" VALUES (%s, 2, %s, %s)",
            (
                record.id,
                '{"events":{"api.calls":6},"event_counts":{"api.calls":1},"event_count":1}',
                NOW,
            ),
        )
        settle = asyncio.create_task(PeriodCloser(processes[1], config).revise_touched(NOW))
        await asyncio.sleep(0.5)
        assert not settle.done()  # it waits for the record's lock
        await other.commit()
        await asyncio.wait_for(settle, 30)
    finally:
        await other.close()
    revisions = await first.list_revisions(record.id)
    assert [r.revision for r in revisions] == [1, 2, 3]
    assert revisions[-1].totals.events["api.calls"] == 7
