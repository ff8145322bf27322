"""usage.threshold_crossed: once per customer, meter, period and threshold, via the outbox."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from meterd.aggregation import calendars_for, ops_for
from meterd.alerts import AlertChecker
from meterd.config.model import SystemConfig
from meterd.customers import CustomerIn, put_customer
from meterd.entitlements import entitlement
from meterd.ingest import NewEvent
from meterd.storage.base import Store
from meterd.storage.postgres.store import PostgresStore
from meterd.storage.sqlite.store import SQLiteStore
from meterd.timeutil import now_ms, parse_iso_ms
from tests.conftest import make_config
from tests.plans_support import PRO, plans_for


@pytest.fixture
def config() -> SystemConfig:
    base = make_config()
    return msgspec.structs.replace(base, plans=plans_for(base, {"pro": PRO}))


def limits(limit: float, period: str = "daily", **extra: object) -> dict[str, Any]:
    return {"api.calls": {"period": period, "limit": limit, **extra}}


async def set_limits(store: Store, config: SystemConfig, customer: str, given: Any) -> None:
    await put_customer(
        store,
        customer_id=customer,
        given=CustomerIn(plan=None, stripe_customer=None, limits=msgspec.json.encode(given)),
        config=config,
        calendars=calendars_for(config),
        now_ms=now_ms(),
    )


async def alert_messages(store: Store, customer: str | None = None) -> list[dict[str, Any]]:
    """The `usage.threshold_crossed` bodies in the outbox, oldest first."""
    rows = await store.list_deliveries(status=None, limit=10_000, before_id=None)
    bodies = [msgspec.json.decode(row.payload) for row in reversed(rows)]
    return [
        body
        for body in bodies
        if body["type"] == "usage.threshold_crossed"
        and (customer is None or body["customerId"] == customer)
    ]


def crossings(messages: list[dict[str, Any]]) -> list[tuple[str, str, float]]:
    return [(m["customerId"], m["data"]["meter"], m["data"]["threshold"]) for m in messages]


async def agrees_with_usage(
    client: httpx.AsyncClient, store: Store, config: SystemConfig, customer: str
) -> Any:
    """The entitlement service's usage equals the live usage route's; returns it."""
    shown = await entitlement(
        store,
        customer_id=customer,
        meter="api.calls",
        config=config,
        calendars=calendars_for(config),
        ops=ops_for(config),
        now_ms=now_ms(),
    )
    live = await client.get(f"/customers/{customer}/usage", params={"period": shown.period})
    assert shown.usage == live.json()["events"].get("api.calls", 0)
    return shown.usage


async def send(client: httpx.AsyncClient, customer: str, *values: float, ids: Any = None) -> None:
    if len(values) == 1 and ids is None:
        answer = await client.post(
            "/usage/api.calls", json={"customerId": customer, "value": values[0]}
        )
    else:
        batch = [
            {"eventType": "api.calls", "customerId": customer, "value": value}
            | ({} if ids is None else {"id": ids[index]})
            for index, value in enumerate(values)
        ]
        answer = await client.post("/usagebatch", json=batch)
    assert answer.status_code == 201, answer.text


async def test_single_events_cross_each_threshold_once(
    client: httpx.AsyncClient, store: Store, config: SystemConfig
) -> None:
    checker = AlertChecker(store, config)
    await set_limits(store, config, "acme", limits(10))
    expected: list[tuple[str, str, float]] = []
    for value, crossed in [(7, []), (0.5, []), (0.5, [80]), (1, []), (1, [100]), (3, [])]:
        await send(client, "acme", value)
        usage = await agrees_with_usage(client, store, config, "acme")
        assert await checker.check(now_ms()) == len(crossed)
        expected += [("acme", "api.calls", t) for t in crossed]
        assert crossings(await alert_messages(store)) == expected
        assert await checker.check(now_ms()) == 0  # a repeat round finds nothing new
    assert usage == 13

    first, second = await alert_messages(store)
    assert set(first) == {"type", "customerId", "data", "created"}
    data = first["data"]
    assert set(data) == {
        "meter",
        "period",
        "periodStart",
        "periodEnd",
        "threshold",
        "usage",
        "limit",
    }
    assert (data["period"], data["threshold"], data["usage"], data["limit"]) == ("daily", 80, 8, 10)
    assert data["periodStart"].endswith("T00:00:00.000Z")
    assert data["periodEnd"].endswith("T23:59:59.999Z")
    assert (second["data"]["threshold"], second["data"]["usage"]) == (100, 10)
    alerts = await store.list_alerts(customer_id="acme", limit=10)
    assert sorted(alert.threshold for alert in alerts) == [80, 100]


async def test_one_batch_can_cross_every_threshold(
    client: httpx.AsyncClient, store: Store, config: SystemConfig
) -> None:
    checker = AlertChecker(store, config)
    await set_limits(store, config, "burst", limits(100, alertThresholds=[50, 90, 100]))
    await send(client, "burst", 20, 20, 20, 20, 20, 5)
    assert await agrees_with_usage(client, store, config, "burst") == 105
    assert await checker.check(now_ms()) == 3
    messages = await alert_messages(store, "burst")
    assert [m["data"]["threshold"] for m in messages] == [50, 90, 100]
    assert {m["data"]["usage"] for m in messages} == {105}


async def test_duplicates_trigger_nothing(
    client: httpx.AsyncClient, store: Store, config: SystemConfig
) -> None:
    checker = AlertChecker(store, config)
    await set_limits(store, config, "dup", limits(10))
    assert await checker.check(now_ms()) == 0  # the touch a new limit makes
    ids = [f"evt-{i}" for i in range(7)]
    await send(client, "dup", *[1] * 7, ids=ids)
    assert await checker.check(now_ms()) == 0
    assert await store.touched_meters(after=None, limit=10) == []
    # Retried: acknowledged as duplicates, not counted, nothing touched, nothing sent.
    await send(client, "dup", *[1] * 7, ids=ids)
    await send(client, "dup", 1, ids=["evt-0"])
    assert await agrees_with_usage(client, store, config, "dup") == 7
    assert await store.touched_meters(after=None, limit=10) == []
    assert await checker.check(now_ms()) == 0
    assert await alert_messages(store) == []


async def test_customers_without_limits_leave_no_trace(
    client: httpx.AsyncClient, store: Store, config: SystemConfig
) -> None:
    await client.put("/customers/free", json={"plan": None})
    await send(client, "free", 5, 5)
    await send(client, "anonymous", 1000)
    assert await store.touched_meters(after=None, limit=10) == []
    assert await AlertChecker(store, config).check(now_ms()) == 0


async def test_plan_allowances_alert_too(
    client: httpx.AsyncClient, store: Store, config: SystemConfig
) -> None:
    await client.put("/customers/pro", json={"plan": "pro"})
    await send(client, "pro", 79_999)
    checker = AlertChecker(store, config)
    assert await checker.check(now_ms()) == 0
    await send(client, "pro", 1)
    assert await checker.check(now_ms()) == 1
    (message,) = await alert_messages(store, "pro")
    assert message["data"] | {"periodStart": None, "periodEnd": None} == {
        "meter": "api.calls",
        "period": "monthly",
        "periodStart": None,
        "periodEnd": None,
        "threshold": 80,
        "usage": 80_000,
        "limit": 100_000,
    }


async def test_many_customers_cross_in_one_round(
    client: httpx.AsyncClient, store: Store, config: SystemConfig
) -> None:
    customers = [f"cus_{i:04d}" for i in range(230)]
    for customer in customers:
        await set_limits(store, config, customer, limits(4))
    checker = AlertChecker(store, config)
    assert await checker.check(now_ms(), batch=64) == 0
    for start in range(0, len(customers), 25):
        batch = [
            {"eventType": "api.calls", "customerId": customer, "value": 2}
            for customer in customers[start : start + 25]
            for _ in range(2)  # 4 each: 80% and 100% at once
        ]
        assert (await client.post("/usagebatch", json=batch)).status_code == 201
    assert await checker.check(now_ms(), batch=64) == 2 * len(customers)
    assert sorted(crossings(await alert_messages(store))) == sorted(
        (customer, "api.calls", t) for customer in customers for t in (80, 100)
    )
    assert await store.touched_meters(after=None, limit=10) == []
    assert await checker.check(now_ms(), batch=64) == 0


async def test_a_touch_during_a_check_is_not_forgotten(
    client: httpx.AsyncClient, store: Store, config: SystemConfig
) -> None:
    await set_limits(store, config, "racy", limits(10))
    await AlertChecker(store, config).check(now_ms())  # the touches a new limit makes
    await send(client, "racy", 5)
    seen = await store.touched_meters(after=None, limit=10)
    assert [(t.customer_id, t.meter) for t in seen] == [("racy", "api.calls")]
    # Ingest touches it again after the check read it: the check must not drop that touch.
    await send(client, "racy", 4)
    assert await store.record_alerts([], checked=seen) == 0
    (left,) = await store.touched_meters(after=None, limit=10)
    assert (left.customer_id, left.version) == ("racy", seen[0].version + 1)
    assert await AlertChecker(store, config).check(now_ms()) == 1


async def test_once_per_period_even_when_usage_falls_back_and_rises_again(
    client: httpx.AsyncClient, store: Store, config: SystemConfig
) -> None:
    """The rule: a threshold alerts once per period. Here usage falls below 80% of the
    limit because the limit is raised (what a correction lowering usage does too), then
    rises past it again: no second alert for 80 in this period."""
    checker = AlertChecker(store, config)
    await set_limits(store, config, "rule", limits(10))
    await send(client, "rule", 8)
    assert await checker.check(now_ms()) == 1
    await set_limits(store, config, "rule", limits(20))  # 8 of 20: below 80% again
    assert await checker.check(now_ms()) == 0
    await send(client, "rule", 9)  # 17 of 20: past 80% a second time
    assert await checker.check(now_ms()) == 0
    await send(client, "rule", 3)  # 20 of 20: 100% is new
    assert await checker.check(now_ms()) == 1
    assert [m["data"]["threshold"] for m in await alert_messages(store, "rule")] == [80, 100]


def reopened(store: Store, tmp_path: Path) -> Store:
    if isinstance(store, SQLiteStore):
        return SQLiteStore(str(tmp_path / "meterd.db"))
    assert isinstance(store, PostgresStore)
    return PostgresStore(store.url)


async def test_touches_and_alerts_survive_a_restart(
    store: Store, config: SystemConfig, tmp_path: Path
) -> None:
    await store.open()
    try:
        await set_limits(store, config, "persist", limits(10))
        ts = now_ms()
        await store.ingest([NewEvent("p1", "api.calls", "persist", 8, None, ts, ts)])
    finally:
        await store.close()  # stopped before any check ran

    again = reopened(store, tmp_path)
    await again.open()
    try:
        checker = AlertChecker(again, config)
        assert await checker.sync() == 1
        assert await checker.check(now_ms()) == 1
        await again.ingest([NewEvent("p2", "api.calls", "persist", 1, None, ts, ts)])
    finally:
        await again.close()

    third = reopened(store, tmp_path)
    await third.open()
    try:
        checker = AlertChecker(third, config)
        await checker.sync()
        assert await checker.check(now_ms()) == 0  # 9 of 10: 80% was sent before the restart
        await third.ingest([NewEvent("p3", "api.calls", "persist", 1, None, ts, ts)])
        assert await checker.check(now_ms()) == 1
        assert [m["data"]["threshold"] for m in await alert_messages(third)] == [80, 100]
    finally:
        await third.close()


async def test_two_processes_send_each_alert_once(
    store: Store, config: SystemConfig, tmp_path: Path
) -> None:
    """Two stores on one database, each with its own checker, racing while events arrive."""
    other = reopened(store, tmp_path)
    await store.open()
    await other.open()
    try:
        customers = [f"two_{i:02d}" for i in range(20)]
        for customer in customers:
            await set_limits(store, config, customer, limits(10, alertThresholds=[30, 60, 90]))
        checkers = [AlertChecker(store, config), AlertChecker(other, config)]
        stop = asyncio.Event()

        async def keep_checking(checker: AlertChecker) -> int:
            found = 0
            while not stop.is_set():
                found += await checker.check(now_ms(), batch=7)
                await asyncio.sleep(0)
            return found

        async def ingest() -> None:
            ts = now_ms()
            for step in range(10):
                for index, target in enumerate((store, other)):
                    await target.ingest(
                        [
                            NewEvent(f"{c}-{step}-{index}", "api.calls", c, 0.5, None, ts, ts)
                            for c in customers
                        ]
                    )
            stop.set()

        found = await asyncio.wait_for(
            asyncio.gather(keep_checking(checkers[0]), keep_checking(checkers[1]), ingest()),
            timeout=120,
        )
        found_after = sum(await asyncio.gather(*(c.check(now_ms()) for c in checkers)))
        assert found[0] + found[1] + found_after == 3 * len(customers)
        messages = await alert_messages(store)
        assert sorted(crossings(messages)) == sorted(
            (c, "api.calls", t) for c in customers for t in (30, 60, 90)
        )
    finally:
        await other.close()
        await store.close()


async def test_a_crossing_just_before_a_period_ends_is_not_lost(
    store: Store, config: SystemConfig
) -> None:
    """The round just after an hour ends still checks the hour that ended."""
    await store.open()
    try:
        await set_limits(store, config, "late", limits(10, period="hourly"))
        checker = AlertChecker(store, config)
        await checker.check(now_ms())  # the touches a new limit makes
        hour_start = calendars_for(config)["hourly"].bounds_at(now_ms()).start_ms
        ts = hour_start - 30_000  # the last minute of the previous hour
        await store.ingest([NewEvent("late-1", "api.calls", "late", 9, None, ts, ts)])
        # The round runs a minute into the next hour.
        assert await checker.check(hour_start + 60_000) == 1
        (message,) = await alert_messages(store, "late")
        assert message["data"]["period"] == "hourly"
        assert parse_iso_ms(message["data"]["periodStart"]) == hour_start - 3_600_000
        assert message["data"]["usage"] == 9
    finally:
        await store.close()
