"""The Stripe bridge end to end against localstripe on 127.0.0.1, on both backends:
events -> close -> one Stripe invoice with the right amount in minor units."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import httpx
import msgspec
import pytest
from starlette.applications import Starlette

from meterd.closing import PeriodCloser
from meterd.config.model import SystemConfig
from meterd.config.plans import InvoicingConfig, StripeConfig
from meterd.http.app import create_app
from meterd.invoicing.bridge import StripeBridge
from meterd.settings import ServerSettings
from meterd.storage.base import Store
from meterd.storage.postgres.store import PostgresStore
from meterd.storage.sqlite.store import SQLiteStore
from meterd.timeutil import now_ms
from tests.conftest import make_config
from tests.localstripe_server import API_KEY, LocalStripe, StripeAccount, shared_localstripe
from tests.plans_support import PRO, close_until_done, plans_for

DAY_MS = 86_400_000
# Far enough ahead that this month has closed, and the grace period too.
LATER = 40 * DAY_MS


@pytest.fixture
def localstripe() -> LocalStripe:
    return shared_localstripe()


@pytest.fixture
def stripe(localstripe: LocalStripe) -> StripeAccount:
    return StripeAccount(localstripe.url)


def pro_config_on(localstripe: LocalStripe) -> SystemConfig:
    """The test config with the pro plan, invoiced through `localstripe`."""
    base = make_config()
    return msgspec.structs.replace(
        base,
        plans=plans_for(base, {"pro": PRO}),
        invoicing=InvoicingConfig(stripe=StripeConfig(api_key=API_KEY, api_base=localstripe.url)),
    )


@pytest.fixture
def config(localstripe: LocalStripe) -> SystemConfig:
    return pro_config_on(localstripe)


def bridge_for(
    store: Store,
    localstripe: LocalStripe,
    *,
    at: int,
    transport: httpx.AsyncBaseTransport | None = None,
    schedule: tuple[int, ...] = (5_000, 300_000),
) -> StripeBridge:
    return StripeBridge(
        store,
        api_base=localstripe.url,
        api_key=API_KEY,
        clock=lambda: at,
        transport=transport,
        retry_schedule_ms=schedule,
    )


async def bill(client: httpx.AsyncClient, customer: str, body: dict[str, object]) -> None:
    assert (await client.put(f"/customers/{customer}", json=body)).status_code == 201
    for value in (12000, 345):
        answer = await client.post(
            "/usage/api.calls", json={"customerId": customer, "value": value}
        )
        assert answer.status_code == 201
    # 49.00 base + 2345 × 0.001 → 2.35 + 0 storage = 51.35
    preview = (await client.get(f"/customers/{customer}/invoice-preview")).json()
    assert preview["totalMinorUnits"] == 5135


async def only_invoice(client: httpx.AsyncClient, customer: str) -> dict[str, object]:
    [invoice] = (await client.get("/invoices", params={"customerId": customer})).json()
    assert isinstance(invoice, dict)
    return invoice


async def test_events_become_one_stripe_invoice_with_the_right_amount(
    client: httpx.AsyncClient,
    store: Store,
    config: SystemConfig,
    localstripe: LocalStripe,
    stripe: StripeAccount,
) -> None:
    customer, _ = stripe.customer_with_subscription()
    await bill(client, "acme", {"plan": "pro", "stripeCustomer": customer})
    at = now_ms() + LATER
    await close_until_done(PeriodCloser(store, config), at)
    draft = await only_invoice(client, "acme")
    assert draft["status"] == "draft"
    assert draft["nextAttemptAt"] is not None

    assert await bridge_for(store, localstripe, at=at).run_once() == 1

    sent = await only_invoice(client, "acme")
    assert sent["status"] == "sent"
    provider = sent["provider"]
    assert isinstance(provider, dict)
    [stripe_invoice] = stripe.invoices(customer)
    assert provider["invoiceId"] == stripe_invoice["id"]
    assert provider["customerId"] == customer
    assert len(provider["invoiceItemIds"]) == 3  # base fee, api.calls, storage.bytes
    assert stripe_invoice["amount_due"] == sent["totalMinorUnits"] == 5135
    assert stripe_invoice["currency"] == "usd"
    assert sorted(line["amount"] for line in stripe_invoice["lines"]["data"] if line["amount"]) == [
        235,
        4900,
    ]
    # Nothing left to send.
    assert await bridge_for(store, localstripe, at=at + DAY_MS).run_once() == 0


async def test_a_subscription_customer_is_resolved_through_stripe(
    client: httpx.AsyncClient,
    store: Store,
    config: SystemConfig,
    localstripe: LocalStripe,
    stripe: StripeAccount,
) -> None:
    customer, subscription = stripe.customer_with_subscription()
    await bill(client, subscription, {"plan": "pro"})
    at = now_ms() + LATER
    await close_until_done(PeriodCloser(store, config), at)
    await bridge_for(store, localstripe, at=at).run_once()
    sent = await only_invoice(client, subscription)
    assert sent["status"] == "sent"
    assert isinstance(sent["provider"], dict)
    assert sent["provider"]["customerId"] == customer
    assert [i["amount_due"] for i in stripe.invoices(customer)] == [5135]


def reopened(store: Store, tmp_path: Path) -> Store:
    """The same database through a new store: what a restarted process sees."""
    if isinstance(store, SQLiteStore):
        return SQLiteStore(store.path)
    assert isinstance(store, PostgresStore)
    return PostgresStore(store.url)


async def test_restart_retrigger_and_resend_create_no_second_stripe_invoice(
    app: Starlette,
    client: httpx.AsyncClient,
    store: Store,
    config: SystemConfig,
    settings: ServerSettings,
    localstripe: LocalStripe,
    stripe: StripeAccount,
    tmp_path: Path,
) -> None:
    customer, _ = stripe.customer_with_subscription()
    await bill(client, "acme", {"plan": "pro", "stripeCustomer": customer})
    at = now_ms() + LATER
    closer = PeriodCloser(store, config)
    await close_until_done(closer, at)
    await bridge_for(store, localstripe, at=at).run_once()
    sent = await only_invoice(client, "acme")

    again = reopened(store, tmp_path)
    await again.open()
    try:
        await close_until_done(PeriodCloser(again, config), at + DAY_MS)
        assert await bridge_for(again, localstripe, at=at + DAY_MS).run_once() == 0
    finally:
        await again.close()
    resend = await client.post(f"/invoices/{sent['id']}/resend")
    assert resend.status_code == 409
    assert "never sent twice" in resend.json()["error"]
    assert await bridge_for(store, localstripe, at=at + 2 * DAY_MS).run_once() == 0
    assert len(stripe.invoices(customer)) == 1
    assert await only_invoice(client, "acme") == sent


class LoseInvoiceAnswer(httpx.AsyncBaseTransport):
    """Stripe creates the invoice but its answer is lost once (a crash or a timeout)."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.lost = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "POST" and request.url.path == "/v1/invoices" and not self.lost:
            await response.aread()
            self.lost += 1
            raise httpx.ReadTimeout("answer lost", request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_lost_answer_is_found_again_not_sent_twice(
    client: httpx.AsyncClient,
    store: Store,
    config: SystemConfig,
    localstripe: LocalStripe,
    stripe: StripeAccount,
) -> None:
    # localstripe ignores Idempotency-Key: meterd's own record must find the first invoice.
    customer, _ = stripe.customer_with_subscription()
    await bill(client, "acme", {"plan": "pro", "stripeCustomer": customer})
    at = now_ms() + LATER
    await close_until_done(PeriodCloser(store, config), at)
    losing = LoseInvoiceAnswer()
    await bridge_for(store, localstripe, at=at, transport=losing).run_once()
    assert losing.lost == 1
    waiting = await only_invoice(client, "acme")
    assert waiting["status"] == "draft"
    assert waiting["attempts"] == 1
    assert "ReadTimeout" in str(waiting["lastError"])

    await bridge_for(store, localstripe, at=at + 10_000).run_once()
    sent = await only_invoice(client, "acme")
    [stripe_invoice] = stripe.invoices(customer)
    assert sent["status"] == "sent"
    assert isinstance(sent["provider"], dict)
    assert sent["provider"]["invoiceId"] == stripe_invoice["id"]
    assert stripe_invoice["amount_due"] == 5135


async def test_stripe_unreachable_then_reachable(
    client: httpx.AsyncClient,
    store: Store,
    config: SystemConfig,
    localstripe: LocalStripe,
    stripe: StripeAccount,
) -> None:
    customer, _ = stripe.customer_with_subscription()
    await bill(client, "acme", {"plan": "pro", "stripeCustomer": customer})
    at = now_ms() + LATER
    await close_until_done(PeriodCloser(store, config), at)
    localstripe.go_down()
    try:
        await bridge_for(store, localstripe, at=at).run_once()
        # Not due again before the retry delay.
        assert await bridge_for(store, localstripe, at=at + 1_000).run_once() == 0
    finally:
        localstripe.come_up()
    waiting = await only_invoice(client, "acme")
    assert waiting["status"] == "draft"
    assert waiting["attempts"] == 1
    assert "unreachable" in str(waiting["lastError"])
    assert API_KEY not in str(waiting["lastError"])
    assert waiting["nextAttemptAt"] is not None
    assert stripe.invoices(customer) == []

    await bridge_for(store, localstripe, at=at + 5_000).run_once()
    sent = await only_invoice(client, "acme")
    assert sent["status"] == "sent"
    assert sent["attempts"] == 2
    assert [i["amount_due"] for i in stripe.invoices(customer)] == [5135]


async def test_failures_end_failed_visibly_and_can_be_resent(
    client: httpx.AsyncClient,
    store: Store,
    config: SystemConfig,
    localstripe: LocalStripe,
    stripe: StripeAccount,
) -> None:
    # No stripeCustomer and not a sub_... id: Stripe cannot be told whom to bill.
    await bill(client, "acme", {"plan": "pro"})
    at = now_ms() + LATER
    await close_until_done(PeriodCloser(store, config), at)
    for step in range(2):
        await bridge_for(store, localstripe, at=at + step * 10_000, schedule=(5_000,)).run_once()
    failed = (await client.get("/invoices", params={"status": "failed"})).json()
    assert [invoice["customerId"] for invoice in failed] == ["acme"]
    assert "no stripeCustomer" in failed[0]["lastError"]
    assert failed[0]["attempts"] == 2

    customer, _ = stripe.customer_with_subscription()
    await client.put("/customers/acme", json={"plan": "pro", "stripeCustomer": customer})
    resent = await client.post(f"/invoices/{failed[0]['id']}/resend")
    assert resent.status_code == 202
    assert resent.json()["status"] == "draft"
    await bridge_for(store, localstripe, at=now_ms() + LATER).run_once()
    assert (await only_invoice(client, "acme"))["status"] == "sent"
    assert [i["amount_due"] for i in stripe.invoices(customer)] == [5135]


async def test_two_processes_send_each_invoice_once(
    client: httpx.AsyncClient,
    store: Store,
    config: SystemConfig,
    localstripe: LocalStripe,
    stripe: StripeAccount,
    tmp_path: Path,
) -> None:
    customers = []
    for index in range(4):
        customer, _ = stripe.customer_with_subscription()
        customers.append(customer)
        await bill(client, f"c{index}", {"plan": "pro", "stripeCustomer": customer})
    at = now_ms() + LATER
    await close_until_done(PeriodCloser(store, config), at)
    other = reopened(store, tmp_path)
    await other.open()
    try:
        done = await asyncio.gather(
            bridge_for(store, localstripe, at=at).run_once(),
            bridge_for(other, localstripe, at=at).run_once(),
        )
    finally:
        await other.close()
    assert sum(done) == 4
    for customer in customers:
        assert [i["amount_due"] for i in stripe.invoices(customer)] == [5135]


async def test_the_stripe_key_is_redacted_in_get_config(client: httpx.AsyncClient) -> None:
    shown = await client.get("/config")
    assert API_KEY not in shown.text
    assert shown.json()["invoicing"]["stripe"]["apiKey"] == "********"


async def test_serve_runs_the_bridge_with_the_key_from_the_environment(
    settings: ServerSettings, config: SystemConfig, store: Store, stripe: StripeAccount
) -> None:
    # The key in settings (METERD_STRIPE_API_KEY) wins over the config's.
    assert config.invoicing.stripe is not None
    keyless = msgspec.structs.replace(
        config,
        invoicing=InvoicingConfig(
            stripe=msgspec.structs.replace(config.invoicing.stripe, api_key=None)
        ),
    )
    running = dataclasses.replace(settings, delivery_poll_s=0.05, stripe_api_key=API_KEY)
    app = create_app(running, keyless, store)
    customer, _ = stripe.customer_with_subscription()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://meterd.test", headers={"x-apikey": "mk_test_key"}
        ) as http:
            await bill(http, "acme", {"plan": "pro", "stripeCustomer": customer})
            await close_until_done(PeriodCloser(store, keyless), now_ms() + LATER)
            # Closed "40 days from now", the invoice is due then; resending makes it due now.
            draft = await only_invoice(http, "acme")
            assert (await http.post(f"/invoices/{draft['id']}/resend")).status_code == 202
            # The bridge polls every 50 ms; wait for it, bounded.
            for _ in range(200):
                if (await only_invoice(http, "acme"))["status"] == "sent":
                    break
                await asyncio.sleep(0.05)
            assert (await only_invoice(http, "acme"))["status"] == "sent"
    assert [i["amount_due"] for i in stripe.invoices(customer)] == [5135]
