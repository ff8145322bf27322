"""Aggregation over billing periods, through the app and a real database."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from meterd.closing import CloseScheduler, PeriodCloser
from meterd.config.model import EventTypeConfig, PeriodConfig, SystemConfig
from meterd.ingest import NewEvent
from meterd.periods import PeriodCalendar
from meterd.rollup import Partial
from meterd.storage.base import Store
from meterd.timeutil import now_ms, parse_iso_ms
from meterd.usage import usage_of
from tests.conftest import make_config

OPS = ("sum", "avg", "min", "max", "count", "first", "last")
ALL_PERIODS = tuple(
    PeriodConfig(name) for name in ("hourly", "daily", "weekly", "monthly", "yearly")
) + (PeriodConfig("30d", every_ms=30 * 86_400_000, anchor_ms=parse_iso_ms("2025-01-15T00:00Z")),)


@pytest.fixture
def config() -> SystemConfig:
    return make_config(
        periods=ALL_PERIODS,
        events={f"t.{op}": EventTypeConfig(op) for op in OPS},  # type: ignore[arg-type]
        max_batch_size=1000,
    )


def event(
    customer: str, value: float, at: str, *, kind: str = "t.sum", id: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "eventType": kind,
        "customerId": customer,
        "value": value,
        "timestamp": at,
    }
    if id is not None:
        body["id"] = id
    return body


async def post(client: httpx.AsyncClient, events: list[dict[str, Any]]) -> None:
    response = await client.post("/usagebatch", json=events)
    assert response.status_code == 201, response.text


async def records(client: httpx.AsyncClient, **params: str) -> dict[str, dict[str, Any]]:
    response = await client.get("/aggregations", params={"limit": "1000", **params})
    assert response.status_code == 200, response.text
    return {item["_id"]: item for item in response.json()}


async def trigger(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.post("/aggregations/trigger")
    assert response.status_code == 202
    body: dict[str, Any] = response.json()
    return body


async def test_seven_operations_in_a_closed_month(client: httpx.AsyncClient) -> None:
    values_at = [
        (5, "2025-01-10T00:00:00Z"),
        (-2.5, "2025-01-03T00:00:00Z"),
        (7, "2025-01-20T00:00:00Z"),
        (1, "2025-01-03T00:00:00Z"),
    ]
    await post(client, [event("cus_1", v, at, kind=f"t.{op}") for op in OPS for v, at in values_at])
    counts = await trigger(client)
    assert counts["closed"] > 0
    found = await records(client, customerId="cus_1", period="monthly")
    record = found["cus_1_monthly_202501"]
    assert record["events"] == {
        "t.sum": 10.5,
        "t.avg": 2.625,
        "t.min": -2.5,
        "t.max": 7,
        "t.count": 4,
        # Two events share the earliest time: arrival order breaks the tie.
        "t.first": -2.5,
        "t.last": 7,
    }
    assert record["eventCounts"] == {f"t.{op}": 4 for op in OPS}
    assert record["eventCount"] == 28
    assert record["periodKey"] == "202501"
    assert record["periodStart"] == "2025-01-01T00:00:00.000Z"
    assert record["periodEnd"] == "2025-01-31T23:59:59.999Z"
    assert record["status"] == "closed"
    assert record["webhookStatus"] == {"delivered": False, "deliveredAt": None, "attempts": 0}
    assert {"timestamp", "createdAt", "updatedAt"} <= record.keys()


async def test_sums_are_exact(client: httpx.AsyncClient) -> None:
    await post(client, [event("a", 0.1, "2025-01-10T00:00:00Z") for _ in range(10)])
    await post(
        client, [event("b", 0.1, "2025-01-10T00:00:00Z"), event("b", 0.2, "2025-01-10T00:00:00Z")]
    )
    big = 2**53 - 1
    await post(
        client,
        [
            event("c", big, "2025-01-10T00:00:00Z"),
            event("c", -big, "2025-01-10T00:00:00Z"),
            event("c", big, "2025-01-10T00:00:00Z"),
        ],
    )
    await trigger(client)
    found = await records(client, period="monthly")
    assert found["a_monthly_202501"]["events"]["t.sum"] == 1
    assert found["b_monthly_202501"]["events"]["t.sum"] == 0.3
    assert found["c_monthly_202501"]["events"]["t.sum"] == big


async def test_a_fractional_sum_that_rounds_to_a_whole_float_stays_a_float(
    client: httpx.AsyncClient,
) -> None:
    # 2**54 + 0.5 is not a whole number, but its nearest double is: the record must still
    # say a float (PostgreSQL's jsonb once turned 1.801439851053056e16 into an integer).
    await post(
        client,
        [event("f", 2.0**54, "2025-01-10T00:00:00Z"), event("f", 0.5, "2025-01-10T00:00:00Z")],
    )
    await trigger(client)
    response = await client.get("/aggregations", params={"customerId": "f", "period": "monthly"})
    [record] = response.json()
    total = record["events"]["t.sum"]
    assert type(total) is float and total == 2.0**54


@pytest.mark.parametrize(
    ("at", "period", "key"),
    [
        ("2025-01-31T23:59:59.999Z", "monthly", "202501"),
        ("2025-02-01T00:00:00.000Z", "monthly", "202502"),
        ("2024-02-29T12:00:00Z", "daily", "20240229"),
        ("2020-12-31T10:00:00Z", "weekly", "202053"),
        ("2021-01-03T23:59:59.999Z", "weekly", "202053"),
        ("2021-01-04T00:00:00Z", "weekly", "202101"),
        ("2024-12-31T23:59:59.999Z", "yearly", "2024"),
        ("2025-01-01T00:00:00Z", "yearly", "2025"),
        ("2025-01-15T09:59:59.999Z", "hourly", "2025011509"),
        ("2025-01-14T23:59:59.999Z", "30d", "202412160000"),
        ("2025-01-15T00:00:00Z", "30d", "202501150000"),
    ],
)
async def test_period_boundaries(client: httpx.AsyncClient, at: str, period: str, key: str) -> None:
    await post(client, [event("edge", 1, at)])
    await trigger(client)
    found = await records(client, customerId="edge", period=period)
    assert list(found) == [f"edge_{period}_{key}"]


async def test_trigger_writes_open_records_for_current_periods(client: httpx.AsyncClient) -> None:
    response = await client.post("/usage/t.sum", json={"customerId": "live", "value": 3})
    assert response.status_code == 201
    counts = await trigger(client)
    assert counts["open"] >= 5
    found = await records(client, customerId="live")
    assert {r["status"] for r in found.values()} == {"open"}
    assert {r["period"] for r in found.values()} == {
        "hourly",
        "daily",
        "weekly",
        "monthly",
        "yearly",
        "30d",
    }
    await client.post("/usage/t.sum", json={"customerId": "live", "value": 4})
    await trigger(client)
    assert {r["events"]["t.sum"] for r in (await records(client, customerId="live")).values()} == {
        7
    }


async def test_a_closed_record_is_final_and_written_once(
    client: httpx.AsyncClient, store: Store, config: SystemConfig
) -> None:
    await post(client, [event("once", 1, "2025-01-10T00:00:00Z")])
    closer = PeriodCloser(store, config)
    assert await closer.close_completed(now_ms()) == 6
    assert await closer.close_completed(now_ms()) == 0
    before = (await records(client, customerId="once"))["once_monthly_202501"]
    assert before["revision"] == 1
    # A late event: the closed record stays as it was, and a revision 2 follows it.
    await post(client, [event("once", 100, "2025-01-11T00:00:00Z")])
    await trigger(client)
    after = (await records(client, customerId="once"))["once_monthly_202501"]
    assert (after["revision"], after["events"], after["createdAt"]) == (
        2,
        {"t.sum": 101},
        before["createdAt"],
    )
    revisions = await client.get("/aggregations/once_monthly_202501/revisions")
    assert [(r["revision"], r["events"]) for r in revisions.json()] == [
        (1, before["events"]),
        (2, {"t.sum": 101}),
    ]
    usage = await client.get(
        "/customers/once/usage", params={"period": "monthly", "at": "2025-01-20T00:00:00Z"}
    )
    assert usage.json()["events"]["t.sum"] == 101
    assert usage.json()["status"] == "closed"


async def test_grace_period_delays_closing(store: Store, config: SystemConfig) -> None:
    await store.open()
    try:
        ts = parse_iso_ms("2025-01-15T10:20:00Z")
        await store.ingest([NewEvent("e1", "t.sum", "g", 1.0, None, ts, ts)])
        closer = PeriodCloser(
            store,
            make_config(
                periods=(PeriodConfig("hourly"),), events=config.events, grace_period_ms=3_600_000
            ),
        )
        hour_end = parse_iso_ms("2025-01-15T11:00:00Z")
        assert await closer.close_completed(hour_end + 3_599_999) == 0
        assert await store.watermark("hourly") is None
        assert await closer.close_completed(hour_end + 3_600_000) == 1
        assert await store.watermark("hourly") == hour_end
    finally:
        await store.close()


async def test_changing_an_op_changes_open_values_without_migration(
    store: Store, config: SystemConfig
) -> None:
    await store.open()
    try:
        now = now_ms()
        await store.ingest(
            [
                NewEvent(f"e{i}", "t.sum", "x", float(v), None, now, now)
                for i, v in enumerate([3, 9, 6])
            ]
        )
        for op, expected in [("sum", 18), ("max", 9), ("avg", 6), ("last", 6), ("count", 3)]:
            changed = make_config(periods=config.periods, events={"t.sum": EventTypeConfig(op)})  # type: ignore[arg-type]
            closer = PeriodCloser(store, changed)
            bounds = closer.calendars["monthly"].bounds_at(now)
            usage = await usage_of(
                store,
                ops=closer.ops,
                customer_id="x",
                period="monthly",
                bounds=bounds,
                now_ms=now,
            )
            assert usage.events == {"t.sum": expected}
    finally:
        await store.close()


async def test_customer_usage_is_live(client: httpx.AsyncClient) -> None:
    await post(
        client,
        [
            event("sub_A_1", 2, "2025-03-30T00:30:00Z"),
            event("sub_A_1", 5, "2025-03-30T23:30:00Z"),
            event("sub_A_1", 7, "2025-03-31T00:30:00Z"),
        ],
    )
    daily = await client.get(
        "/customers/sub_A_1/usage", params={"period": "daily", "at": "2025-03-30T12:00:00Z"}
    )
    assert daily.status_code == 200
    body = daily.json()
    assert body["events"] == {"t.sum": 7}
    assert body["eventCount"] == 2
    assert body["periodKey"] == "20250330"
    monthly = await client.get("/customers/sub_A_1/usage", params={"at": "2025-03-30T12:00:00Z"})
    assert monthly.json()["period"] == "monthly"
    assert monthly.json()["events"] == {"t.sum": 14}
    await post(client, [event("org/42", 3, "2025-03-30T00:30:00Z")])
    slashed = await client.get("/customers/org%2F42/usage", params={"at": "2025-03-30T12:00:00Z"})
    assert slashed.status_code == 200
    assert slashed.json()["customerId"] == "org/42"
    assert slashed.json()["events"] == {"t.sum": 3}
    behind = await client.get("/aggregations/org%2F42_daily_20250330/events")
    assert [e["customerId"] for e in behind.json()] == ["org/42"]
    nobody = await client.get("/customers/nobody/usage")
    assert nobody.json()["eventCount"] == 0
    assert (
        await client.get("/customers/x/usage", params={"period": "fortnightly"})
    ).status_code == 400
    assert (await client.get("/customers/x/usage", params={"at": "never"})).status_code == 400


async def test_the_events_behind_an_aggregation(client: httpx.AsyncClient) -> None:
    await post(
        client,
        [
            event("sub_ABC_123", 1, "2025-01-15T08:00:00Z", id="in-1"),
            event("sub_ABC_123", 2, "2025-01-15T23:59:59.999Z", id="in-2", kind="t.max"),
            event("sub_ABC_123", 4, "2025-01-16T00:00:00Z", id="next-day"),
            event("sub_ABC", 8, "2025-01-15T08:00:00Z", id="other-customer"),
        ],
    )
    response = await client.get("/aggregations/sub_ABC_123_daily_20250115/events")
    assert response.status_code == 200
    assert [e["_id"] for e in response.json()] == ["in-2", "in-1"]
    page = await client.get(
        "/aggregations/sub_ABC_123_daily_20250115/events", params={"limit": "1"}
    )
    rest = await client.get(
        "/aggregations/sub_ABC_123_daily_20250115/events",
        params={"limit": "1", "cursor": page.headers["x-next-cursor"]},
    )
    assert [e["_id"] for e in page.json() + rest.json()] == ["in-2", "in-1"]
    for bad in ("nonsense", "sub_daily_2025", "x_fortnightly_20250115", "x_daily_20251399"):
        assert (await client.get(f"/aggregations/{bad}/events")).status_code == 404


async def test_aggregations_filters_and_paging(client: httpx.AsyncClient) -> None:
    await post(
        client,
        [event(f"c{c}", 1, f"2025-01-{d:02d}T00:00:00Z") for c in range(3) for d in (1, 2, 3)],
    )
    await trigger(client)
    daily = await records(client, period="daily")
    assert len(daily) == 9
    assert len(await records(client, period="daily", customerId="c1")) == 3
    assert len(await records(client, period="daily", **{"from": "2025-01-02T00:00:00Z"})) == 6
    seen: list[str] = []
    params = {"period": "daily", "limit": "4"}
    while True:
        response = await client.get("/aggregations", params=params)
        seen += [item["_id"] for item in response.json()]
        if "x-next-cursor" not in response.headers:
            break
        params["cursor"] = response.headers["x-next-cursor"]
    assert sorted(seen) == sorted(daily)
    starts = [daily[i]["periodStart"] for i in seen]
    assert starts == sorted(starts, reverse=True)
    assert (await client.get("/aggregations", params={"period": "nope"})).status_code == 400


async def test_rebuild_gives_identical_rollups(client: httpx.AsyncClient, store: Store) -> None:
    events = [
        event(
            f"c{i % 5}",
            v,
            f"2025-01-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00Z",
            kind=f"t.{OPS[i % 7]}",
            id=f"r{i}",
        )
        for i, v in enumerate([0.1, -3, 2.5, 1e-3, 7, 0.2, 11] * 30)
    ]
    # 150 distinct events and 60 retries of them (the same content: duplicates).
    await post(client, events[:150] + events[:60])
    hourly = PeriodCalendar(PeriodConfig("hourly"), "UTC")
    hours = list(
        hourly.bounds_between(parse_iso_ms("2025-01-01T00:00Z"), parse_iso_ms("2025-01-29T00:00Z"))
    )

    async def snapshot() -> dict[tuple[str, str], dict[str, Partial]]:
        found = {}
        for customer in (f"c{i}" for i in range(5)):
            for bounds in hours:
                partials = await store.customer_partials(customer, bounds)
                if partials:
                    found[customer, bounds.key] = partials
        return found

    before = await snapshot()
    assert sum(len(p) for p in before.values()) == 150
    assert await store.rebuild_rollups() == 150
    assert await snapshot() == before


async def test_the_scheduler_closes_completed_periods(store: Store, config: SystemConfig) -> None:
    await store.open()
    try:
        ts = parse_iso_ms("2025-01-15T10:20:00Z")
        await store.ingest([NewEvent("e1", "t.sum", "s", 1.0, None, ts, ts)])
        scheduler = CloseScheduler(PeriodCloser(store, config), interval_s=0.01)
        scheduler.start()
        for _ in range(500):
            if await store.watermark("monthly") is not None:
                break
            await asyncio.sleep(0.01)
        await scheduler.stop()
        assert await store.watermark("monthly") == parse_iso_ms("2025-02-01T00:00:00Z")
    finally:
        await store.close()


def test_dst_day_lengths_in_oslo() -> None:
    daily = PeriodCalendar(PeriodConfig("daily"), "Europe/Oslo")
    spring = daily.bounds_at(parse_iso_ms("2025-03-30T12:00:00Z"))
    autumn = daily.bounds_at(parse_iso_ms("2025-10-26T12:00:00Z"))
    assert spring.end_ms - spring.start_ms == 23 * 3_600_000
    assert autumn.end_ms - autumn.start_ms == 25 * 3_600_000
