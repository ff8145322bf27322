"""Random streams of events, voids, amends and late events, on both backends, checked
after every settle against a naive reference over the events that are still active.

Time runs from 2025-03-27 to 2025-04-02 in Europe/Oslo (DST starts 2025-03-30, March
closes at local midnight), so events land before and after the close of every kind
of period. The reference shares no code with meterd's rollups or period arithmetic
(it is the one of test_aggregation_property). After each settle:

- every closed record's latest revision equals the reference over the active events;
- every period that is closed has a record for each customer with active events in it;
- the outbox holds one `aggregation.completed` per record and one
  `aggregation.adjusted` per later revision (2, 3, ... each once), the last of which
  carries the record's totals, and `previous` is the revision before.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from typing import Any

import msgspec
import pytest

from meterd import corrections
from meterd.closing import PeriodCloser
from meterd.config.model import SystemConfig, WebhookConfig
from meterd.errors import Conflict
from meterd.ingest import NewEvent
from meterd.storage.base import AggregationQuery, EventQuery, KeyIdentity, Store
from tests.integration.test_aggregation_property import (
    HOUR,
    MINUTE,
    OPS,
    PERIODS,
    QUARTER,
    Arrival,
    Event,
    ReferenceCalendar,
    Scenario,
    expected_totals_problems,
    groups,
    record_id,
    utc,
)

START = utc(2025, 3, 27, 6)
ROUNDS = 12
ROUND_MS = 12 * HOUR
FINAL = utc(2026, 6, 1)
KEY = KeyIdentity("reference-test", "mk_refer")
CUSTOMERS = ("a", "b_1")
VALUES = (0.1, 0.2, -1.5, 3, 2.5, 0.001, 7, 0)


def scenario() -> Scenario:
    return Scenario(
        timezone="Europe/Oslo",
        custom_every_ms=3 * HOUR + 45 * MINUTE,
        custom_anchor_ms=utc(2024, 1, 15),
        grace_ms=0,
        steps=(),
        pause_after=None,
        pause_now_ms=0,
        page_size=1000,
    )


def config() -> SystemConfig:
    hook = WebhookConfig(url="http://127.0.0.1:9/hook", secrets=("whsec_c2VjcmV0",))
    return msgspec.structs.replace(scenario().config(), webhooks=(hook,))


class Stream:
    """The test's own account of which events are active."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.active: dict[str, Event] = {}
        self.voided: set[str] = set()
        self.count = 0

    def new_event(self, now: int) -> Event:
        self.count += 1
        rng = self.rng
        # Mostly recent; some late by days, landing in closed periods.
        back = rng.choice((0, rng.randrange(0, 6 * HOUR), rng.randrange(0, 4 * 24 * HOUR)))
        ts = (now - back) // QUARTER * QUARTER + rng.choice((0, 1, QUARTER - 1))
        return Event(
            id=f"e{self.count}",
            customer_id=rng.choice(CUSTOMERS),
            event_type=rng.choice(tuple(OPS)),
            value=float(rng.choice(VALUES)),
            ts_ms=min(ts, now),
        )


async def run_round(store: Store, stream: Stream, now: int) -> None:
    rng = stream.rng
    batch = [stream.new_event(now) for _ in range(rng.randrange(3, 9))]
    stored = await store.ingest(
        [NewEvent(e.id, e.event_type, e.customer_id, e.value, None, e.ts_ms, now) for e in batch]
    )
    assert all(stored)
    stream.active.update((e.id, e) for e in batch)
    for _ in range(rng.randrange(0, 3)):
        victim = rng.choice(sorted(stream.active))
        body = json.dumps({"reason": "duplicate"}).encode()
        await corrections.void_event(store, event_id=victim, body=body, key=KEY, now_ms=now)
        stream.voided.add(stream.active.pop(victim).id)
    for _ in range(rng.randrange(0, 3)):
        target = stream.active[rng.choice(sorted(stream.active))]
        change: dict[str, Any] = rng.choice(
            (
                {"value": rng.choice(VALUES) + 100},
                {"timestamp": target.ts_ms - rng.randrange(1, 3 * 24 * HOUR)},
                {"customerId": "c_moved"},
                {"value": 1, "timestamp": min(now, target.ts_ms + rng.randrange(1, 2 * HOUR))},
            )
        )
        if change.get("customerId") == target.customer_id or (
            change.get("value") == target.value and change.get("timestamp") == target.ts_ms
        ):
            continue  # nothing would change
        amendment = await corrections.amend_event(
            store,
            event_id=target.id,
            body=json.dumps({"reason": "fix", **change}).encode(),
            key=KEY,
            idempotency_key=None,
            now_ms=now,
        )
        new = amendment.replacement
        stream.voided.add(stream.active.pop(target.id).id)
        stream.active[new.id] = Event(
            new.id, new.customer_id, new.event_type, float(new.value), new.ts_ms
        )
    if stream.voided and rng.random() < 0.5:
        again = rng.choice(sorted(stream.voided))
        with pytest.raises(Conflict):
            await corrections.amend_event(
                store,
                event_id=again,
                body=b'{"reason": "again", "value": 12345}',
                key=KEY,
                idempotency_key=None,
                now_ms=now,
            )


async def check(store: Store, stream: Stream, calendar: ReferenceCalendar) -> list[str]:
    listed = await store.list_events(EventQuery(limit=100_000, include_voided=True))
    seq = {event.id: event.seq for event in listed}
    assert {e.id for e in listed if e.voided_ms is None} == set(stream.active)
    arrivals = [Arrival(seq[e.id], 0, e) for e in stream.active.values()]
    expected = {record_id(group): members for group, members in groups(arrivals, calendar).items()}
    spans = {record_id(group): group for group in groups(arrivals, calendar)}
    rows = await store.list_aggregations(AggregationQuery(limit=100_000))
    deliveries = await store.list_deliveries(status=None, limit=100_000, before_id=None)
    sent: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for delivery in sorted(deliveries, key=lambda d: d.id):
        sent[delivery.aggregation_id].append(json.loads(delivery.payload))
    problems = []
    marks = {period: await store.watermark(period) for period in PERIODS}
    records = {row.id: row for row in rows}
    for rid, (_, period, span) in spans.items():
        mark = marks[period]
        if mark is not None and span.end_ms <= mark and rid not in records:
            problems.append(f"{rid}: closed period without a record")
    for row in rows:
        if row.status != "closed":
            continue
        members = expected.get(row.id, [])
        if members:
            problems += [f"{row.id}: {p}" for p in expected_totals_problems(row.totals, members)]
        elif row.totals.event_count or row.totals.events:
            problems.append(f"{row.id}: nothing active, but the record says {row.totals}")
        messages = sent.get(row.id, [])
        types = [m["type"] for m in messages]
        want = ["aggregation.completed"] + ["aggregation.adjusted"] * (row.revision - 1)
        if types != want:
            problems.append(f"{row.id}: revision {row.revision}, messages {types}")
            continue
        revisions = [m["data"]["revision"] for m in messages[1:]]
        if revisions != list(range(2, row.revision + 1)):
            problems.append(f"{row.id}: adjusted revisions {revisions}")
        last = messages[-1]["data"]
        if (last["events"], last["eventCount"]) != (row.totals.events, row.totals.event_count):
            problems.append(f"{row.id}: last message {last} != record {row.totals}")
        for before, after in zip(messages, messages[1:], strict=False):
            previous = {k: before["data"][k] for k in ("events", "eventCounts", "eventCount")}
            if after["data"]["previous"] != previous:
                problems.append(f"{row.id}: previous {after['data']['previous']} != {previous}")
    return problems


@pytest.mark.parametrize("seed", [1, 2])
async def test_latest_revisions_match_a_naive_reference(store: Store, seed: int) -> None:
    rng = random.Random(seed)
    stream = Stream(rng)
    calendar = ReferenceCalendar(scenario())
    await store.open()
    try:
        closer = PeriodCloser(store, config())
        for index in range(ROUNDS):
            now = START + index * ROUND_MS + rng.randrange(0, HOUR)
            await run_round(store, stream, now)
            if rng.random() < 0.5:
                await closer.trigger(now)
            else:
                await closer.close_completed(now)
            problems = await check(store, stream, calendar)
            assert not problems, "\n".join([f"seed {seed}, round {index}:", *problems[:20]])
        await closer.trigger(FINAL)
        problems = await check(store, stream, calendar)
        rows = await store.list_aggregations(AggregationQuery(limit=100_000))
        problems += [f"{row.id}: still {row.status}" for row in rows if row.status != "closed"]
        assert not problems, "\n".join([f"seed {seed}, final:", *problems[:20]])
        # The stream did what it is for: corrections and late events revised records.
        revised = [row for row in rows if row.revision >= 2]
        assert len(revised) >= 5 and max(row.revision for row in rows) >= 3, len(revised)
    finally:
        await store.close()
