"""Invoice records: priced at the close of a customer's plan period, in its transaction."""

from __future__ import annotations

from decimal import Decimal

import httpx
import msgspec
import pytest

from meterd.closing import PeriodCloser
from meterd.config.model import SystemConfig
from meterd.storage.base import Store
from meterd.timeutil import now_ms
from tests.conftest import make_config
from tests.plans_support import DAILY_JPY, PRO, close_until_done, plans_for

DAY_MS = 86_400_000


@pytest.fixture
def config() -> SystemConfig:
    base = make_config()
    return msgspec.structs.replace(
        base,
        plans=plans_for(
            base, {"pro": PRO, "daily": DAILY_JPY, "daily2": {**DAILY_JPY, "baseFee": "100"}}
        ),
    )


async def send(client: httpx.AsyncClient, customer: str, event_type: str, value: float) -> None:
    answer = await client.post(
        f"/usage/{event_type}", json={"customerId": customer, "value": value}
    )
    assert answer.status_code == 201, answer.text


async def test_preview_prices_live_usage_line_by_line(client: httpx.AsyncClient) -> None:
    await client.put("/customers/acme", json={"plan": "pro"})
    await send(client, "acme", "api.calls", 12000)
    await send(client, "acme", "api.calls", 345)
    await send(client, "acme", "storage.bytes", 300_000_000)
    preview = await client.get("/customers/acme/invoice-preview")
    assert preview.status_code == 200, preview.text
    body = preview.json()
    assert (body["plan"], body["period"], body["currency"]) == ("pro", "monthly", "usd")
    # 49.00 base + (12345 - 10000) × 0.001 = 2.345 → 2.35 + 3e8 × 1e-8 = 3.00
    assert [(line["kind"], line.get("meter"), line["amount"]) for line in body["lines"]] == [
        ("base_fee", None, "49.00"),
        ("usage", "api.calls", "2.35"),
        ("usage", "storage.bytes", "3.00"),
    ]
    calls = body["lines"][1]
    assert calls["quantity"] == "12345"
    assert calls["model"] == "graduated"
    assert calls["tiers"] == [
        {
            "from": "0",
            "upTo": 10000,
            "quantity": "10000",
            "unitPrice": "0",
            "flatPrice": "0",
            "amount": "0",
        },
        {
            "from": "10000",
            "upTo": None,
            "quantity": "2345",
            "unitPrice": "0.001",
            "flatPrice": "0",
            "amount": "2.345",
        },
    ]
    assert body["lines"][2]["unitPrice"] == "1E-8"
    assert (body["total"], body["totalMinorUnits"]) == ("54.35", 5435)
    assert (await client.get("/customers/nobody/invoice-preview")).status_code == 404


async def test_closing_a_plan_period_writes_one_invoice_and_its_webhook(
    client: httpx.AsyncClient, store: Store, config: SystemConfig
) -> None:
    await client.put("/customers/acme", json={"plan": "daily"})
    await client.put("/customers/quiet", json={"plan": "daily2"})  # base fee, no events
    await client.put("/customers/free", json={})  # metered, not invoiced
    await client.put("/customers/other", json={"plan": "pro"})  # monthly: not closed here
    for customer in ("acme", "free", "other"):
        await send(client, customer, "api.calls", 1)
        await send(client, customer, "api.calls", 2)
    closer = PeriodCloser(store, config)
    now = now_ms()
    tomorrow = now + DAY_MS + 3_600_000
    await close_until_done(closer, tomorrow)

    listed = (await client.get("/invoices")).json()
    # "other" is billed monthly: invoiced only when this month ends by tomorrow.
    month_ends = closer.calendars["monthly"].bounds_at(now).end_ms <= tomorrow
    expected = ["acme", "other", "quiet"] if month_ends else ["acme", "quiet"]
    assert sorted(invoice["customerId"] for invoice in listed) == expected
    acme = (await client.get("/invoices", params={"customerId": "acme"})).json()[0]
    assert acme["status"] == "draft"
    assert acme["provider"] is None
    assert (acme["plan"], acme["period"], acme["currency"]) == ("daily", "daily", "jpy")
    # 3 calls × 1.5 yen = 4.5 → 5 yen, rounded half-up to whole yen.
    assert [
        (line["meter"], line["quantity"], line["unitPrice"], line["amount"])
        for line in acme["lines"]
    ] == [("api.calls", "3", "1.5", "5")]
    assert (acme["total"], acme["totalMinorUnits"]) == ("5", 5)
    one = await client.get(f"/invoices/{acme['id']}")
    assert one.json() == acme
    quiet = (await client.get("/invoices", params={"customerId": "quiet"})).json()[0]
    assert quiet["total"] == "100"

    deliveries = (await client.get("/deliveries")).json()
    invoice_deliveries = [d for d in deliveries if d["aggregationId"] == acme["id"]]
    assert len(invoice_deliveries) == 1
    payload = (await client.get(f"/deliveries/{invoice_deliveries[0]['id']}")).json()["payload"]
    assert payload["type"] == "invoice.created"
    assert payload["customerId"] == "acme"
    assert payload["data"]["id"] == acme["id"]
    assert payload["data"]["lines"] == acme["lines"]
    assert payload["data"]["total"] == "5"

    # Closing again, later, writes no second invoice and no second webhook.
    await close_until_done(closer, tomorrow + DAY_MS)
    assert len((await client.get("/invoices", params={"customerId": "acme"})).json()) == 1
    again = (await client.get("/deliveries")).json()
    assert len([d for d in again if d["aggregationId"] == acme["id"]]) == 1


async def test_a_plan_change_bills_from_the_next_period(
    client: httpx.AsyncClient, store: Store, config: SystemConfig
) -> None:
    await client.put("/customers/acme", json={"plan": "daily"})
    changed = (await client.put("/customers/acme", json={"plan": "daily2"})).json()
    assert changed["plan"] == "daily"
    await send(client, "acme", "api.calls", 2)
    closer = PeriodCloser(store, config)
    await close_until_done(closer, now_ms() + DAY_MS + 3_600_000)
    [today] = (await client.get("/invoices", params={"customerId": "acme"})).json()
    assert (today["plan"], today["total"]) == ("daily", "3")


async def test_invoices_are_listed_in_pages_and_filtered(
    client: httpx.AsyncClient, store: Store, config: SystemConfig
) -> None:
    for index in range(3):
        await client.put(f"/customers/c{index}", json={"plan": "daily"})
        await send(client, f"c{index}", "api.calls", 10)
    await close_until_done(PeriodCloser(store, config), now_ms() + DAY_MS + 3_600_000)
    first = await client.get("/invoices", params={"limit": 2})
    second = await client.get(
        "/invoices", params={"limit": 2, "cursor": first.headers["X-Next-Cursor"]}
    )
    ids = [i["id"] for i in first.json()] + [i["id"] for i in second.json()]
    assert len(set(ids)) == 3
    assert len((await client.get("/invoices", params={"status": "draft"})).json()) == 3
    assert (await client.get("/invoices", params={"status": "sent"})).json() == []
    bad = await client.get("/invoices", params={"status": "paid"})
    assert (bad.status_code, bad.json()["field"]) == (400, "status")
    assert (await client.get("/invoices/inv_nope")).status_code == 404
    # Without Stripe configured there is nothing to resend to.
    resend = await client.post(f"/invoices/{ids[0]}/resend")
    assert resend.status_code == 409
    assert Decimal(first.json()[0]["total"]) == 15


async def test_get_config_shows_plans_and_hides_the_stripe_key(
    client: httpx.AsyncClient,
) -> None:
    shown = (await client.get("/config")).json()
    assert shown["plans"]["pro"]["baseFee"] == "49.00"
    assert shown["invoicing"] == {}
