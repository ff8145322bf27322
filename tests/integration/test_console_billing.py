"""Groups, the invoice preview and invoices on the console and the portal, on both backends.

Every figure a page shows is compared with the API's answer for the same customer: the
pages read through the same services (`usage.py`, `preview.py`, `billing.py`).
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import msgspec
import pytest

from meterd.closing import PeriodCloser
from meterd.config.model import EventTypeConfig, PeriodConfig, SystemConfig
from meterd.storage.base import Store
from meterd.timeutil import now_ms
from tests.conftest import make_config
from tests.integration.console_support import csrf_of, sign_in
from tests.plans_support import close_until_done, plans_for

DAY_MS = 86_400_000
TOKENS_PLAN = {
    "currency": "usd",
    "period": "daily",
    "baseFee": "5.00",
    "charges": {
        "llm.tokens": {
            "model": "per_unit",
            "unitPrice": "0.001",
            "byGroup": {"model": {"gpt-4o": {"unitPrice": "0.01"}}},
        }
    },
    "allowances": {"api.calls": 100},
}

CALLS_PLAN = {
    "currency": "usd",
    "period": "monthly",
    "charges": {"api.calls": {"model": "per_unit", "unitPrice": "0.10"}},
}


@pytest.fixture
def config() -> SystemConfig:
    base = make_config(
        periods=(PeriodConfig("daily"), PeriodConfig("monthly")),
        events={
            "api.calls": EventTypeConfig("sum"),
            "llm.tokens": EventTypeConfig("sum", group_by=("model",)),
        },
    )
    plans = {"tokens": TOKENS_PLAN, "calls": CALLS_PLAN}
    return msgspec.structs.replace(base, plans=plans_for(base, plans))


async def send_usage(api: httpx.AsyncClient, customer_id: str) -> None:
    events: list[dict[str, Any]] = [
        {"eventType": "api.calls", "customerId": customer_id, "value": 30},
        *(
            {
                "eventType": "llm.tokens",
                "customerId": customer_id,
                "value": tokens,
                "metadata": {"model": model},
            }
            for model, tokens in (("gpt-4o", 1000), ("gpt-4o", 500), ("mini", 2000))
        ),
        {"eventType": "llm.tokens", "customerId": customer_id, "value": 7},  # group null
    ]
    answer = await api.post("/usagebatch", json=events)
    assert answer.status_code == 201, answer.text


def section(html: str, heading_id: str) -> str:
    start = html.index(f'id="{heading_id}"')
    end = html.find("</section>", start)
    return html[start:end]


def rows(html: str) -> list[list[str]]:
    """The body rows of the tables in `html`, as cell texts without tags."""
    found = []
    for body in re.findall(r"<tbody>(.*?)</tbody>", html, re.S):
        for row in re.findall(r"<tr>(.*?)</tr>", body, re.S):
            cells = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)
            found.append([re.sub(r"<[^>]+>|\s+", " ", cell).strip() for cell in cells])
    return found


async def portal(api: httpx.AsyncClient, customer_id: str, **extra: object) -> str:
    answer = await api.post("/portal/tokens", json={"customerId": customer_id, **extra})
    assert answer.status_code == 201, answer.text
    token: str = answer.json()["token"]
    return "/portal/" + token


async def console(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """The same client signed in to the console (its API key header opens no page)."""
    await sign_in(client)
    return client


async def test_customer_page_shows_groups_preview_and_invoices(
    client: httpx.AsyncClient, store: Store, config: SystemConfig
) -> None:
    api = client
    assert (await api.put("/customers/acme", json={"plan": "tokens"})).is_success
    await send_usage(api, "acme")
    usage = (await api.get("/customers/acme/usage", params={"period": "daily"})).json()
    preview = (await api.get("/customers/acme/invoice-preview")).json()
    browser = await console(client)

    page = (await browser.get("/console/customers/acme?period=daily")).text
    groups = rows(page[page.index('id="groups-heading"') : page.index('id="entitlements-heading"')])
    assert groups == [
        [g["dimensions"]["model"] or "null", f"{g['value']:,}", str(g["count"])]
        for g in usage["groups"]["llm.tokens"]
    ]
    assert groups == [["null", "7", "1"], ["gpt-4o", "1,500", "2"], ["mini", "2,000", "1"]]
    invoices = section(page, "invoices-heading")
    assert f"{preview['total']} USD" in invoices and preview["total"] == "22.01"
    assert [row[-1] for row in rows(invoices)[:3]] == [
        f"{line['amount']} USD" for line in preview["lines"]
    ]
    assert "No invoices yet" in invoices

    await close_until_done(PeriodCloser(store, config), now_ms() + DAY_MS + 3_600_000)
    [invoice] = (await api.get("/invoices", params={"customerId": "acme"})).json()
    page = (await browser.get("/console/customers/acme?period=daily")).text
    listed = [row for row in rows(section(page, "invoices-heading")) if row[0].startswith("inv_")]
    assert listed == [
        [
            invoice["id"],
            "acme",
            f"tokens daily {invoice['periodKey']}",
            "draft",
            f"{invoice['total']} USD",
            "none",
        ]
    ]
    # The invoices page: filtered by status and customer; one invoice with its lines.
    for status, expected in (("draft", 1), ("sent", 0), ("", 1)):
        listing = await browser.get(
            "/console/invoices", params={"status": status, "customerId": "acme"}
        )
        assert listing.status_code == 200
        assert listing.text.count(f">{invoice['id']}</a>") == expected, status
    assert (await browser.get("/console/invoices", params={"status": "paid"})).status_code == 400
    detail = await browser.get(f"/console/invoices/{invoice['id']}")
    assert detail.status_code == 200
    assert [row[-1] for row in rows(detail.text)] == [
        f"{line['amount']} USD" for line in invoice["lines"]
    ]
    assert f"{invoice['total']} USD" in detail.text and "draft" in detail.text
    # Without a payment provider there is nothing to resend to: no button, and a post
    # (a stale page) gets the API's reason.
    assert "No payment provider is configured" in detail.text and "Resend" not in detail.text
    refused = await browser.post(
        f"/console/invoices/{invoice['id']}/resend", data={"csrfToken": csrf_of(detail.text)}
    )
    assert refused.status_code == 409 and "no payment provider is configured" in refused.text
    assert (await browser.get("/console/invoices/inv_" + "0" * 24)).status_code == 404
    assert (await browser.get("/console/invoices/nope")).status_code == 404


async def test_customer_without_a_plan_has_no_preview(client: httpx.AsyncClient) -> None:
    await send_usage(client, "free")
    browser = await console(client)
    page = (await browser.get("/console/customers/free")).text
    assert "No plan: this customer is metered, not invoiced" in section(page, "invoices-heading")


async def test_portal_shows_groups_limits_and_the_preview_of_a_planned_customer(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.put("/customers/acme", json={"plan": "tokens"})).is_success
    await send_usage(client, "acme")
    preview = (await client.get("/customers/acme/invoice-preview")).json()
    entitled = (await client.get("/customers/acme/entitlements/api.calls")).json()
    everything = await portal(client, "acme")

    data = (await client.get(everything + "/usage.json")).json()
    assert data["invoicePreview"]["total"] == preview["total"] == "22.01"
    assert data["invoicePreview"]["lines"] == preview["lines"]
    assert [g["dimensions"]["model"] for g in data["groups"]["llm.tokens"]] == [
        None,
        "gpt-4o",
        "mini",
    ]
    assert [e for e in data["entitlements"] if e["meter"] == "api.calls"] == [entitled]
    html = (await client.get(everything)).text
    assert re.search(r'<meter id="limit-1" class="limit" min="0" max="100"[^>]* value="30"', html)
    assert "api.calls (daily)" in html and "30 of 100" in html
    assert rows(section(html, "groups-heading")) == [
        ["null", "7", "1"],
        ["gpt-4o", "1,500", "2"],
        ["mini", "2,000", "1"],
    ]
    assert f"{preview['total']} USD" in section(html, "invoice-heading")

    # A token for api.calls only: no groups, and no preview (its lines name llm.tokens).
    narrow = await portal(client, "acme", meters=["api.calls"])
    data = (await client.get(narrow + "/usage.json")).json()
    assert data["invoicePreview"] is None and data["groups"] == {}
    assert [e["meter"] for e in data["entitlements"]] == ["api.calls"]
    html = (await client.get(narrow)).text
    assert "llm.tokens" not in html and "invoice-heading" not in html and "gpt-4o" not in html
    # A token for the charged meter: the preview, its usage limited to that meter.
    tokens = await portal(client, "acme", meters=["llm.tokens"])
    data = (await client.get(tokens + "/usage.json")).json()
    assert data["invoicePreview"]["total"] == preview["total"]
    assert set(data["invoicePreview"]["usage"]) == {"llm.tokens"}
    assert "api.calls" not in (await client.get(tokens)).text


async def test_portal_of_a_customer_without_a_plan_has_no_preview(
    client: httpx.AsyncClient,
) -> None:
    await send_usage(client, "free")
    link = await portal(client, "free")
    data = (await client.get(link + "/usage.json")).json()
    assert data["invoicePreview"] is None
    assert all(e["limit"] is None for e in data["entitlements"])
    html = (await client.get(link)).text
    assert "invoice-heading" not in html and "limits-heading" not in html
    assert "groups-heading" in html


async def test_a_portal_token_sees_the_preview_of_its_customers_own_plan(
    client: httpx.AsyncClient,
) -> None:
    """The check is against the customer's plan: another plan's meters do not matter."""
    assert (await client.put("/customers/callsco", json={"plan": "calls"})).is_success
    await send_usage(client, "callsco")
    preview = (await client.get("/customers/callsco/invoice-preview")).json()
    link = await portal(client, "callsco", meters=["api.calls"])
    data = (await client.get(link + "/usage.json")).json()
    # The API's preview, its usage limited to the granted meter.
    assert preview["total"] == "3.00" and preview["usage"]["llm.tokens"] == 3507
    shown = data["invoicePreview"]
    assert shown == {**preview, "asOf": shown["asOf"], "usage": {"api.calls": 30}}
    assert f"{preview['total']} USD" in section((await client.get(link)).text, "invoice-heading")
