"""Meters v2 through the app (DESIGN §6): groups, unique counts, percentiles, time-weighted."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from meterd.config.model import EventTypeConfig, PeriodConfig, SystemConfig
from meterd.http.app import create_app
from meterd.ingest import NewEvent
from meterd.meters.usage import customer_totals
from meterd.periods import PeriodBounds
from meterd.settings import ServerSettings
from meterd.storage.base import Store
from meterd.storage.sqlite.meter_indexes import index_name
from meterd.storage.sqlite.meters import with_type
from meterd.storage.sqlite.store import SQLiteStore, store_queries
from tests.conftest import API_KEY, make_config

EVENTS = {
    "llm.tokens": EventTypeConfig("sum", group_by=("model", "direction")),
    "active.users": EventTypeConfig("unique_count", property_key="userId"),
    "seats": EventTypeConfig("time_weighted_avg"),
    "latency.ms": EventTypeConfig("percentile", percentile=50),
    "api.calls": EventTypeConfig("sum"),
}


@pytest.fixture
def config() -> SystemConfig:
    return make_config(periods=(PeriodConfig("daily"),), events=EVENTS, max_batch_size=1000)


def ev(kind: str, value: float, at: str, customer: str = "c1", **meta: Any) -> dict[str, Any]:
    return {
        "eventType": kind,
        "customerId": customer,
        "value": value,
        "timestamp": at,
        "metadata": meta,
    }


async def post(client: httpx.AsyncClient, events: list[dict[str, Any]]) -> None:
    response = await client.post("/usagebatch", json=events)
    assert response.status_code == 201, response.text


async def test_live_usage_and_closed_records_have_groups_and_new_ops(
    client: httpx.AsyncClient,
) -> None:
    day = "2025-03-10T"
    await post(
        client,
        [
            ev("llm.tokens", 100, day + "01:00:00Z", model="gpt-4o", direction="in"),
            ev("llm.tokens", 50, day + "02:00:00Z", model="gpt-4o", direction="out"),
            ev("llm.tokens", 7, day + "03:00:00Z", model=1.0, direction=True),
            ev("llm.tokens", 3, day + "04:00:00Z"),
            ev("active.users", 1, day + "01:00:00Z", userId="u1"),
            ev("active.users", 1, day + "02:00:00Z", userId="u1"),
            ev("active.users", 1, day + "03:00:00Z", userId=2),
            ev("active.users", 1, day + "04:00:00Z"),
            ev("latency.ms", 4, day + "01:00:00Z"),
            ev("latency.ms", 1, day + "02:00:00Z"),
            ev("latency.ms", 3, day + "03:00:00Z"),
            ev("latency.ms", 2, day + "04:00:00Z"),
            # 10 seats from 06:00, 20 from 18:00: (10 * 12h + 20 * 6h) / 24h = 10.
            ev("seats", 10, day + "06:00:00Z"),
            ev("seats", 20, day + "18:00:00Z"),
        ],
    )
    usage = (
        await client.get("/customers/c1/usage", params={"period": "daily", "at": day + "12:00:00Z"})
    ).json()
    assert usage["events"] == {
        "active.users": 2,
        "latency.ms": 2,
        "llm.tokens": 160,
        "seats": 10,
    }
    assert usage["eventCounts"]["active.users"] == 4
    assert usage["groups"] == {
        "llm.tokens": [
            {"dimensions": {"model": None, "direction": None}, "value": 3, "count": 1},
            {"dimensions": {"model": "1", "direction": "true"}, "value": 7, "count": 1},
            {"dimensions": {"model": "gpt-4o", "direction": "in"}, "value": 100, "count": 1},
            {"dimensions": {"model": "gpt-4o", "direction": "out"}, "value": 50, "count": 1},
        ]
    }
    # The next day has no events, but 20 seats are held through it.
    trigger = await client.post("/aggregations/trigger")
    assert trigger.status_code == 202
    listing = await client.get("/aggregations", params={"limit": "1000"})
    records = {r["_id"]: r for r in listing.json()}
    assert records["c1_daily_20250310"]["events"] == usage["events"]
    assert records["c1_daily_20250310"]["groups"] == usage["groups"]
    assert records["c1_daily_20250311"]["events"] == {"seats": 20}
    assert records["c1_daily_20250311"]["eventCounts"] == {"seats": 0}
    assert "groups" not in records["c1_daily_20250311"]
    # The audit route shows each event's group, so a disputed group can be traced.
    audit = await client.get(
        "/aggregations/c1_daily_20250310/events", params={"eventType": "llm.tokens"}
    )
    assert sorted((e["value"], tuple(e["group"].values())) for e in audit.json()) == [
        (3, (None, None)),
        (7, ("1", "true")),
        (50, ("gpt-4o", "out")),
        (100, ("gpt-4o", "in")),
    ]
    plain = await client.get(
        "/aggregations/c1_daily_20250310/events", params={"eventType": "seats"}
    )
    assert all("group" not in e for e in plain.json())


async def test_meter_indexes_follow_the_config_and_reads_stay_exact(open_store: Store) -> None:
    ts = 1_741_600_800_000  # 2025-03-10T10:00:00Z
    await open_store.ingest(
        [NewEvent(f"e{i}", "latency.ms", "c1", float(i), None, ts + i, ts + i) for i in range(1, 5)]
    )
    bounds = PeriodBounds("x", ts, ts + 60_000)
    meters = {"latency.ms": EventTypeConfig("percentile", percentile=50)}

    async def p50() -> object:
        totals = await customer_totals(
            open_store, customer_id="c1", bounds=bounds, ops={}, meters=meters
        )
        return totals.events

    assert await p50() == {"latency.ms": 2}
    built = await open_store.prepare_meters(["latency.ms", "seats"])
    assert len(built) == 2
    assert await open_store.prepare_meters(["latency.ms", "seats"]) == []  # already there
    assert await p50() == {"latency.ms": 2}
    # A meter that no longer reads raw events loses its index; the others keep theirs.
    assert await open_store.prepare_meters(["latency.ms"]) == []
    assert len(await open_store.prepare_meters(["latency.ms", "seats"])) == 1
    assert await p50() == {"latency.ms": 2}


def test_sqlite_reads_a_meter_through_its_partial_index(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "m.db"))

    async def run() -> str:
        await store.open()
        try:
            await store.prepare_meters(["latency.ms"])
        finally:
            await store.close()
        sql = with_type(store_queries()["meter_events"], "latency.ms")
        sql = sql.replace("/*customers*/", "AND customer_id IN ('c1')")
        with sqlite3.connect(tmp_path / "m.db") as conn:
            plan = conn.execute("EXPLAIN QUERY PLAN " + sql, {"from_ms": 0, "to_ms": 1}).fetchall()
        return " ".join(str(row) for row in plan)

    plan = asyncio.run(run())
    assert index_name("latency.ms") in plan and "COVERING INDEX" in plan, plan


async def test_a_changed_meter_applies_to_open_periods_at_the_next_start(
    store: Store, settings: ServerSettings
) -> None:
    """op, groupBy, property and percentile change with no rebuild: raw events decide."""
    day = "2025-03-10T"
    events = [
        ev("m", v, day + f"0{i}:00:00Z", model=model, userId=user)
        for i, (v, model, user) in enumerate(
            [(1, "a", "u1"), (2, "b", "u1"), (3, "a", "u2"), (4, "b", "u3")], start=1
        )
    ]

    async def usage_with(meter: EventTypeConfig) -> dict[str, Any]:
        config = make_config(periods=(PeriodConfig("daily"),), events={"m": meter})
        app = create_app(settings, config, store)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            headers = {"x-apikey": API_KEY}
            async with httpx.AsyncClient(
                transport=transport, base_url="http://t", headers=headers
            ) as client:
                if events:
                    await post(client, events)
                    events.clear()
                response = await client.get(
                    "/customers/c1/usage", params={"period": "daily", "at": day + "12:00:00Z"}
                )
                body: dict[str, Any] = response.json()
                return body

    first = await usage_with(EventTypeConfig("sum"))
    assert first["events"] == {"m": 10} and "groups" not in first
    grouped = await usage_with(EventTypeConfig("max", group_by=("model",)))
    assert grouped["events"] == {"m": 4}
    assert [(g["dimensions"], g["value"]) for g in grouped["groups"]["m"]] == [
        ({"model": "a"}, 3),
        ({"model": "b"}, 4),
    ]
    unique = await usage_with(EventTypeConfig("unique_count", property_key="userId"))
    assert unique["events"] == {"m": 3}
    assert (await usage_with(EventTypeConfig("percentile", percentile=50)))["events"] == {"m": 2}
    assert (await usage_with(EventTypeConfig("percentile", percentile=51)))["events"] == {"m": 3}


async def test_a_voided_event_leaves_every_meter_value(client: httpx.AsyncClient) -> None:
    # Meters that read raw events (groups, distinct counts, percentiles, levels) must skip
    # voided events as the rollups do (DESIGN §8: every total counts active events only).
    day = "2025-03-10T"
    kept = [
        ev("llm.tokens", 100, day + "01:00:00Z", model="gpt-4o"),
        ev("active.users", 1, day + "01:00:00Z", userId="u1"),
        ev("latency.ms", 1, day + "01:00:00Z"),
        ev("latency.ms", 2, day + "02:00:00Z"),
        ev("seats", 10, day + "00:00:00Z"),
    ]
    wrong = [
        ev("llm.tokens", 900, day + "02:00:00Z", model="o1"),
        ev("active.users", 1, day + "02:00:00Z", userId="u2"),
        ev("latency.ms", 50, day + "03:00:00Z"),
        ev("latency.ms", 60, day + "04:00:00Z"),
        ev("seats", 30, day + "12:00:00Z"),
    ]
    for index, event in enumerate(wrong):
        event["id"] = f"wrong-{index}"
    await post(client, kept + wrong)
    params = {"period": "daily", "at": day + "12:00:00Z"}
    before = (await client.get("/customers/c1/usage", params=params)).json()
    assert before["events"] == {
        "llm.tokens": 1000,
        "active.users": 2,
        "latency.ms": 2,
        "seats": 20,
    }
    for index in range(len(wrong)):
        voided = await client.post(f"/events/wrong-{index}/void", json={"reason": "test data"})
        assert voided.status_code == 200, voided.text
    after = (await client.get("/customers/c1/usage", params=params)).json()
    assert after["events"] == {"llm.tokens": 100, "active.users": 1, "latency.ms": 1, "seats": 10}
    assert after["groups"] == {
        "llm.tokens": [
            {"dimensions": {"model": "gpt-4o", "direction": None}, "value": 100, "count": 1}
        ]
    }
    assert (await client.post("/aggregations/trigger")).status_code == 202
    listing = await client.get("/aggregations", params={"limit": "1000"})
    record = {r["_id"]: r for r in listing.json()}["c1_daily_20250310"]
    assert record["events"] == after["events"]
