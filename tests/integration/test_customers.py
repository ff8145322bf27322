"""PUT/GET /customers: plans (changes from the next plan period), Stripe ids and limits."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import msgspec
import pytest

from meterd.config.model import SystemConfig
from meterd.timeutil import parse_iso_ms
from tests.conftest import make_config
from tests.plans_support import DAILY_JPY, PRO, plans_for


@pytest.fixture
def config() -> SystemConfig:
    base = make_config()
    return msgspec.structs.replace(
        base,
        plans=plans_for(base, {"pro": PRO, "starter": {**PRO, "baseFee": "9"}, "daily": DAILY_JPY}),
    )


def month_bounds(now: datetime) -> tuple[str, str]:
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return (start.strftime("%Y-%m-%dT%H:%M:%S.000Z"), end.strftime("%Y-%m-%dT%H:%M:%S.000Z"))


async def test_put_creates_then_replaces_and_get_returns_it(client: httpx.AsyncClient) -> None:
    body = {
        "plan": "pro",
        "stripeCustomer": "cus_123",
        "limits": {"api.calls": {"period": "monthly", "limit": 100000}},
    }
    created = await client.put("/customers/acme", json=body)
    assert created.status_code == 201, created.text
    shown = created.json()
    start, _ = month_bounds(datetime.now(UTC))
    assert shown["id"] == "acme"
    assert shown["plan"] == "pro"
    # A first plan bills the current period.
    assert shown["planEffectiveFrom"] == start
    assert shown["nextPlan"] is None
    assert shown["stripeCustomer"] == "cus_123"
    assert shown["limits"] == body["limits"]

    fetched = await client.get("/customers/acme")
    assert fetched.status_code == 200
    assert fetched.json() == shown | {"updatedAt": fetched.json()["updatedAt"]}

    replaced = await client.put("/customers/acme", json={"plan": "pro"})
    assert replaced.status_code == 200
    assert replaced.json()["stripeCustomer"] is None
    assert replaced.json()["limits"] is None
    assert replaced.json()["createdAt"] == shown["createdAt"]


async def test_a_plan_change_applies_from_the_next_plan_period(client: httpx.AsyncClient) -> None:
    await client.put("/customers/acme", json={"plan": "pro"})
    changed = (await client.put("/customers/acme", json={"plan": "starter"})).json()
    start, end = month_bounds(datetime.now(UTC))
    assert changed["plan"] == "pro"
    assert changed["planEffectiveFrom"] == start
    assert changed["nextPlan"] == {"plan": "starter", "effectiveFrom": end}
    # Changing back before it applies cancels the change.
    back = (await client.put("/customers/acme", json={"plan": "pro"})).json()
    assert back["plan"] == "pro"
    assert back["nextPlan"] is None
    # Removing the plan also waits for the period to end.
    removed = (await client.put("/customers/acme", json={"plan": None})).json()
    assert removed["plan"] == "pro"
    assert removed["nextPlan"] == {"plan": None, "effectiveFrom": end}


async def test_a_customer_without_a_plan_is_metered_not_invoiced(
    client: httpx.AsyncClient,
) -> None:
    created = await client.put("/customers/free", json={})
    assert created.status_code == 201
    assert created.json()["plan"] is None
    preview = await client.get("/customers/free/invoice-preview")
    assert preview.status_code == 404
    assert "no plan" in preview.json()["error"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"plan": "gold"}, "plan"),
        ({"plan": 3}, "plan"),
        ({"plan": "pro", "stripeCustomer": 5}, "stripeCustomer"),
        ({"plan": "pro", "limits": []}, "limits"),
        ({"plan": "pro", "limits": {"nope": {"period": "monthly", "limit": 1}}}, "limits.nope"),
        (
            {"plan": "pro", "limits": {"api.calls": {"period": "yearly", "limit": 1}}},
            "limits.api.calls.period",
        ),
        (
            {"plan": "pro", "limits": {"api.calls": {"period": "monthly", "limit": -1}}},
            "limits.api.calls.limit",
        ),
        ({"plan": "pro", "extra": 1}, "extra"),
    ],
)
async def test_bad_customers_are_refused_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    answer = await client.put("/customers/acme", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field
    assert answer.json()["error"].startswith(field)
    assert (await client.get("/customers/acme")).status_code == 404


async def test_malformed_bodies_are_400(client: httpx.AsyncClient) -> None:
    assert (await client.put("/customers/acme", content=b"{nope")).status_code == 400
    assert (await client.put("/customers/acme", json=[1])).status_code == 400


async def test_customers_are_listed_in_pages(client: httpx.AsyncClient) -> None:
    for index in range(5):
        await client.put(f"/customers/c{index}", json={"plan": "pro" if index % 2 else None})
    first = await client.get("/customers", params={"limit": 2})
    assert [c["id"] for c in first.json()] == ["c0", "c1"]
    assert first.json()[1]["plan"] == "pro"
    cursor = first.headers["X-Next-Cursor"]
    second = await client.get("/customers", params={"limit": 2, "cursor": cursor})
    assert [c["id"] for c in second.json()] == ["c2", "c3"]
    last = await client.get(
        "/customers", params={"limit": 2, "cursor": second.headers["X-Next-Cursor"]}
    )
    assert [c["id"] for c in last.json()] == ["c4"]
    assert "X-Next-Cursor" not in last.headers


async def test_plans_billing_other_periods_start_at_their_own_period(
    client: httpx.AsyncClient,
) -> None:
    # `daily` plans start billing at the start of today.
    shown = (await client.put("/customers/d", json={"plan": "daily"})).json()
    today = datetime.now(UTC).strftime("%Y-%m-%dT00:00:00.000Z")
    assert shown["planEffectiveFrom"] == today
    assert parse_iso_ms(shown["createdAt"]) >= parse_iso_ms(today)


async def test_customer_ids_with_control_characters_are_refused(
    client: httpx.AsyncClient,
) -> None:
    put = await client.put("/customers/a%01b", json={"plan": "pro"})
    assert (put.status_code, put.json()["field"]) == (400, "customerId")
    assert (await client.get("/customers/a%00b")).status_code == 404
    assert (await client.get("/customers/a%00b/invoice-preview")).status_code == 404
    listed = await client.get("/invoices", params={"customerId": "a\x00b"})
    assert (listed.status_code, listed.json()["field"]) == (400, "customerId")
    assert (await client.get("/invoices/inv_%00")).status_code == 404
