"""GET /customers/{id}/entitlements[/{meter}]: limits from plans and customers, live usage."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec
import pytest

from meterd.config.model import SystemConfig
from tests.conftest import make_config
from tests.plans_support import PRO, plans_for


@pytest.fixture
def config() -> SystemConfig:
    base = make_config()
    return msgspec.structs.replace(
        base, plans=plans_for(base, {"pro": PRO, "plain": {**PRO, "allowances": {}}})
    )


async def usage_of(client: httpx.AsyncClient, customer: str, meter: str, period: str) -> Any:
    answer = await client.get(f"/customers/{customer}/usage", params={"period": period})
    assert answer.status_code == 200, answer.text
    return answer.json()["events"].get(meter, 0)


async def check_against_usage(
    client: httpx.AsyncClient, customer: str, meter: str, limit: float | None
) -> dict[str, Any]:
    """The entitlement, after checking it agrees with the live usage route."""
    answer = await client.get(f"/customers/{customer}/entitlements/{meter}")
    assert answer.status_code == 200, answer.text
    shown: dict[str, Any] = answer.json()
    usage = await usage_of(client, customer, meter, shown["period"])
    assert shown["usage"] == usage
    assert shown["limit"] == limit
    if limit is None:
        assert shown["remaining"] is None
        assert shown["hasAccess"] is True
    else:
        assert shown["remaining"] == max(limit - usage, 0)
        assert shown["hasAccess"] is (usage < limit)
    return shown


async def test_a_customer_limit_counts_every_acknowledged_event(
    client: httpx.AsyncClient,
) -> None:
    limits = {"api.calls": {"period": "daily", "limit": 10}}
    assert (await client.put("/customers/acme", json={"plan": None, "limits": limits})).is_success
    shown = await check_against_usage(client, "acme", "api.calls", 10)
    assert shown["usage"] == 0 and shown["hasAccess"] is True and shown["period"] == "daily"
    assert shown["periodStart"].endswith("T00:00:00.000Z")
    assert shown["periodEnd"].endswith("T23:59:59.999Z")

    steps: list[list[float]] = [[3], [2.5, 2.5], [1], [1], [5]]
    for step, values in enumerate(steps):
        if len(values) == 1:
            sent = await client.post(
                "/usage/api.calls", json={"customerId": "acme", "value": values[0]}
            )
        else:
            batch = [{"eventType": "api.calls", "customerId": "acme", "value": v} for v in values]
            sent = await client.post("/usagebatch", json=batch)
        assert sent.status_code == 201, sent.text
        shown = await check_against_usage(client, "acme", "api.calls", 10)
        assert shown["usage"] == sum(sum(v) for v in steps[: step + 1])
    assert shown["usage"] == 15 and shown["hasAccess"] is False and shown["remaining"] == 0


async def test_access_ends_exactly_at_the_limit(client: httpx.AsyncClient) -> None:
    limits = {"api.calls": {"period": "monthly", "limit": 4}}
    await client.put("/customers/edge", json={"plan": None, "limits": limits})
    await client.post("/usage/api.calls", json={"customerId": "edge", "value": 3.9})
    assert (await check_against_usage(client, "edge", "api.calls", 4))["hasAccess"] is True
    await client.post("/usage/api.calls", json={"customerId": "edge", "value": 0.1})
    shown = await check_against_usage(client, "edge", "api.calls", 4)
    assert shown["usage"] == 4 and shown["hasAccess"] is False


async def test_plan_allowances_are_limits_and_customer_limits_win(
    client: httpx.AsyncClient,
) -> None:
    await client.put("/customers/planned", json={"plan": "pro"})
    await client.post("/usage/api.calls", json={"customerId": "planned", "value": 7})
    shown = await check_against_usage(client, "planned", "api.calls", 100000)
    assert shown["period"] == "monthly" and shown["remaining"] == 100000 - 7

    own = {"api.calls": {"period": "daily", "limit": 5}}
    await client.put("/customers/planned", json={"plan": "pro", "limits": own})
    shown = await check_against_usage(client, "planned", "api.calls", 5)
    assert shown["period"] == "daily" and shown["hasAccess"] is False


async def test_meters_without_a_limit_are_open(client: httpx.AsyncClient) -> None:
    # Never registered: metered, no limits.
    await client.post("/usage/storage.bytes", json={"customerId": "stranger", "value": 512})
    shown = await check_against_usage(client, "stranger", "storage.bytes", None)
    assert shown["usage"] == 512 and shown["period"] == "monthly"

    listing = await client.get("/customers/stranger/entitlements")
    assert listing.status_code == 200
    body = listing.json()
    assert body["customerId"] == "stranger"
    assert [e["meter"] for e in body["entitlements"]] == sorted(make_config().events)
    for entry in body["entitlements"]:
        assert entry == await check_against_usage(client, "stranger", entry["meter"], None)

    await client.put("/customers/plain", json={"plan": "plain"})
    assert (await check_against_usage(client, "plain", "api.calls", None))["hasAccess"]


async def test_the_listing_shows_each_limit_in_its_own_period(client: httpx.AsyncClient) -> None:
    limits: dict[str, dict[str, Any]] = {
        "api.calls": {"period": "daily", "limit": 100},
        "storage.bytes": {"period": "hourly", "limit": 1000},
    }
    await client.put("/customers/mixed", json={"plan": "pro", "limits": limits})
    await client.post(
        "/usagebatch",
        json=[
            {"eventType": "api.calls", "customerId": "mixed", "value": 40},
            {"eventType": "storage.bytes", "customerId": "mixed", "value": 2000},
        ],
    )
    body = (await client.get("/customers/mixed/entitlements")).json()
    by_meter = {entry["meter"]: entry for entry in body["entitlements"]}
    assert by_meter["api.calls"]["period"] == "daily"
    assert by_meter["storage.bytes"]["period"] == "hourly"
    assert by_meter["response.time.ms"]["period"] == "monthly"  # the plan's period
    assert by_meter["storage.bytes"]["hasAccess"] is False
    for meter, entry in by_meter.items():
        limit = limits.get(meter, {}).get("limit")
        assert entry == await check_against_usage(client, "mixed", meter, limit)


async def test_unknown_meters_and_impossible_customers_are_404(client: httpx.AsyncClient) -> None:
    unknown = await client.get("/customers/acme/entitlements/nope")
    assert unknown.status_code == 404
    assert "nope" in unknown.json()["error"]
    bad_id = await client.get("/customers/a%01b/entitlements/api.calls")
    assert bad_id.status_code == 404


@pytest.mark.parametrize(
    ("thresholds", "problem"),
    [
        ("80", "array"),
        ([0], "out of range"),
        ([80, 80], "twice"),
        ([True], "numbers"),
        ([1001], "out of range"),
    ],
)
async def test_limit_alert_thresholds_are_checked(
    client: httpx.AsyncClient, thresholds: object, problem: str
) -> None:
    limits = {"api.calls": {"period": "daily", "limit": 10, "alertThresholds": thresholds}}
    answer = await client.put("/customers/acme", json={"plan": None, "limits": limits})
    assert 400 <= answer.status_code < 500
    assert "limits.api.calls.alertThresholds" in answer.text
    assert problem in answer.text


async def test_config_shows_the_alert_thresholds(client: httpx.AsyncClient) -> None:
    assert (await client.get("/config")).json()["alertThresholds"] == [80, 100]
