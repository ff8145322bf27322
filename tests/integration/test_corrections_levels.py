"""Time-weighted levels carry across period boundaries (DESIGN.md section 6), so a void,
an amendment or a late event revises every later closed period up to the customer's
next event of that type and group; both backends."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from meterd import corrections
from meterd.closing import CloseScheduler, PeriodCloser
from meterd.config.model import EventTypeConfig, PeriodConfig, SystemConfig, WebhookConfig
from meterd.ingest import NewEvent
from meterd.storage.base import AggregationQuery, KeyIdentity, Store
from meterd.timeutil import parse_iso_ms
from tests.conftest import make_config

KEY = KeyIdentity("levels-test", "mk_level")
DAY = 86_400_000


def config() -> SystemConfig:
    hook = WebhookConfig(url="http://127.0.0.1:9/hook", secrets=("whsec_c2VjcmV0",))
    return make_config(
        periods=(PeriodConfig("daily"),),
        events={
            "seats": EventTypeConfig("time_weighted_avg"),
            "gb": EventTypeConfig("time_weighted_avg", group_by=("region",)),
        },
        webhooks=(hook,),
    )


def at(day: int, hour: int = 0) -> int:
    return parse_iso_ms(f"2025-01-{day:02d}T{hour:02d}:00:00Z")


def event(
    id: str, customer: str, value: float, ts: int, type: str = "seats", **meta: str
) -> NewEvent:
    metadata = json.dumps(meta).encode() if meta else None
    return NewEvent(id, type, customer, value, metadata, ts, ts)


async def records(store: Store, customer: str) -> dict[str, tuple[int, dict[str, Any]]]:
    rows = await store.list_aggregations(AggregationQuery(customer_id=customer, limit=1000))
    return {row.period_key: (row.revision, row.totals.events) for row in rows}


async def sent(store: Store, customer: str) -> dict[str, list[tuple[str, int]]]:
    rows = await store.list_deliveries(status=None, limit=10_000, before_id=None)
    found: dict[str, list[tuple[str, int]]] = {}
    for row in sorted(rows, key=lambda r: r.id):
        payload = json.loads(row.payload)
        if payload["customerId"] == customer:
            key = payload["data"]["periodKey"]
            found.setdefault(key, []).append((payload["type"], payload["data"].get("revision", 1)))
    return found


def one_message_per_revision(
    rows: dict[str, tuple[int, dict[str, Any]]], messages: dict[str, list[tuple[str, int]]]
) -> None:
    for key, (revision, _) in rows.items():
        want = [("aggregation.completed", 1)] + [
            ("aggregation.adjusted", n) for n in range(2, revision + 1)
        ]
        assert messages.get(key) == want, key
    assert set(messages) == set(rows)


async def test_a_void_revises_every_later_period_the_level_held(store: Store) -> None:
    await store.open()
    try:
        closer = PeriodCloser(store, config())
        # 10 seats from the 2nd at 12:00, 4 from the 5th at 00:00.
        await store.ingest([event("s1", "a", 10, at(2, 12)), event("s2", "a", 4, at(5))])
        await closer.close_completed(at(8))
        assert await records(store, "a") == {
            "20250102": (1, {"seats": 5}),
            "20250103": (1, {"seats": 10}),
            "20250104": (1, {"seats": 10}),
            "20250105": (1, {"seats": 4}),
            "20250106": (1, {"seats": 4}),
            "20250107": (1, {"seats": 4}),
        }
        body = b'{"reason": "seat count was wrong"}'
        await corrections.void_event(store, event_id="s1", body=body, key=KEY, now_ms=at(8))
        assert await closer.close_completed(at(8, 1)) == 3
        assert await records(store, "a") == {
            "20250102": (2, {}),
            "20250103": (2, {}),
            "20250104": (2, {}),
            # The next event ends the voided level: later periods stay as they were.
            "20250105": (1, {"seats": 4}),
            "20250106": (1, {"seats": 4}),
            "20250107": (1, {"seats": 4}),
        }
        one_message_per_revision(await records(store, "a"), await sent(store, "a"))
        assert await closer.close_completed(at(8, 2)) == 0
    finally:
        await store.close()


async def test_a_late_level_creates_records_up_to_the_latest_closed_period(store: Store) -> None:
    await store.open()
    try:
        closer = PeriodCloser(store, config())
        await store.ingest([event("o1", "other", 1, at(1))])
        await closer.close_completed(at(6))
        assert await records(store, "late") == {}
        # A level from the 3rd, sent after the 5th closed, with no later event.
        await store.ingest([event("l1", "late", 8, at(3, 18))])
        assert await closer.close_completed(at(6, 1)) == 3
        assert await records(store, "late") == {
            "20250103": (1, {"seats": 2}),
            "20250104": (1, {"seats": 8}),
            "20250105": (1, {"seats": 8}),
        }
        # An amendment moves the level's start: the 3rd drops it, the 4th halves it.
        amended = await corrections.amend_event(
            store,
            event_id="l1",
            body=json.dumps({"reason": "late start", "timestamp": at(4, 12)}).encode(),
            key=KEY,
            idempotency_key=None,
            now_ms=at(6, 2),
        )
        assert amended.replacement.ts_ms == at(4, 12)
        await closer.close_completed(at(6, 3))
        rows = await records(store, "late")
        assert rows == {
            "20250103": (2, {}),
            "20250104": (2, {"seats": 4}),
            "20250105": (1, {"seats": 8}),
        }
        one_message_per_revision(rows, await sent(store, "late"))
        # The next period closes with the level held into it.
        await closer.close_completed(at(7))
        assert (await records(store, "late"))["20250106"] == (1, {"seats": 8})
    finally:
        await store.close()


async def test_groups_carry_until_their_own_next_event(store: Store) -> None:
    await store.open()
    try:
        closer = PeriodCloser(store, config())
        await store.ingest(
            [
                event("g1", "g", 6, at(2), "gb", region="eu"),
                event("g2", "g", 2, at(2), "gb", region="us"),
                # The us level changes on the 3rd; the eu level holds on.
                event("g3", "g", 1, at(3), "gb", region="us"),
            ]
        )
        await closer.close_completed(at(5))
        assert await records(store, "g") == {
            "20250102": (1, {"gb": 8}),
            "20250103": (1, {"gb": 7}),
            "20250104": (1, {"gb": 7}),
        }
        body = b'{"reason": "eu was never used"}'
        await corrections.void_event(store, event_id="g1", body=body, key=KEY, now_ms=at(5))
        await closer.close_completed(at(5, 1))
        rows = await records(store, "g")
        assert rows == {
            "20250102": (2, {"gb": 2}),
            "20250103": (2, {"gb": 1}),
            "20250104": (2, {"gb": 1}),
        }
        one_message_per_revision(rows, await sent(store, "g"))
    finally:
        await store.close()


async def test_the_scheduler_revises_what_corrections_touched(store: Store) -> None:
    await store.open()
    try:
        closer = PeriodCloser(store, config())
        await store.ingest([event("t1", "t", 3, at(2))])
        await closer.close_completed(at(4))
        body = b'{"reason": "test event"}'
        await corrections.void_event(store, event_id="t1", body=body, key=KEY, now_ms=at(4))
        scheduler = CloseScheduler(closer, interval_s=0.01, clock=lambda: at(4, 1))
        scheduler.start()
        try:
            for _ in range(500):
                if (await records(store, "t"))["20250103"][0] == 2:
                    break
                await asyncio.sleep(0.01)
        finally:
            await scheduler.stop()
        assert await records(store, "t") == {"20250102": (2, {}), "20250103": (2, {})}
    finally:
        await store.close()


async def test_a_long_carry_is_settled_in_short_transactions(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A level with no later event reaches every closed period; each transaction takes
    # changes only until it has touched TOUCHED_BATCH records, and the rounds go on.
    from meterd.storage.postgres import corrections as postgres_corrections
    from meterd.storage.sqlite import corrections as sqlite_corrections

    for module in (sqlite_corrections, postgres_corrections):
        monkeypatch.setattr(module, "TOUCHED_BATCH", 5)
    hourly = make_config(
        periods=(PeriodConfig("hourly"),), events={"seats": EventTypeConfig("time_weighted_avg")}
    )
    await store.open()
    try:
        closer = PeriodCloser(store, hourly)
        await store.ingest([event("x1", "other", 0, at(1))])
        await closer.close_completed(at(3))
        await store.ingest([event("h1", "h", 6, at(1)), event("k1", "k", 2, at(2, 12))])
        assert await closer.close_completed(at(3, 0) + 1) == 48 + 12
        rows = await records(store, "h")
        assert len(rows) == 48 and all(row == (1, {"seats": 6}) for row in rows.values())
        rows = await records(store, "k")
        assert len(rows) == 12 and all(row == (1, {"seats": 2}) for row in rows.values())
        one_message_per_revision(await records(store, "h"), await sent(store, "h"))
    finally:
        await store.close()
