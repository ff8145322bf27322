"""An invoice that failed to reach Stripe, shown and re-sent from the console
(localstripe on 127.0.0.1, both backends); without a provider there is nothing to resend."""

from __future__ import annotations

import re

import httpx
import pytest

from meterd.closing import PeriodCloser
from meterd.config.model import SystemConfig
from meterd.storage.base import Store
from meterd.timeutil import now_ms
from tests.integration.console_support import csrf_of, sign_in
from tests.integration.test_stripe_bridge import (
    LATER,
    bill,
    bridge_for,
    only_invoice,
    pro_config_on,
)
from tests.localstripe_server import LocalStripe, StripeAccount, shared_localstripe
from tests.plans_support import close_until_done


@pytest.fixture
def localstripe() -> LocalStripe:
    return shared_localstripe()


@pytest.fixture
def config(localstripe: LocalStripe) -> SystemConfig:
    return pro_config_on(localstripe)


async def test_a_failed_invoice_shows_its_error_and_is_resent_from_the_console(
    client: httpx.AsyncClient, store: Store, config: SystemConfig, localstripe: LocalStripe
) -> None:
    # No stripeCustomer and not a sub_... id: Stripe cannot be told whom to bill.
    await bill(client, "acme", {"plan": "pro"})
    at = now_ms() + LATER
    await close_until_done(PeriodCloser(store, config), at)
    for step in range(2):
        await bridge_for(store, localstripe, at=at + step * 10_000, schedule=(5_000,)).run_once()
    failed = await only_invoice(client, "acme")
    assert failed["status"] == "failed"
    await sign_in(client)
    page = await client.get(f"/console/invoices/{failed['id']}")
    assert 'status-failed">failed<' in page.text and "no stripeCustomer" in page.text
    listing = await client.get("/console/invoices", params={"status": "failed"})
    assert f">{failed['id']}</a>" in listing.text

    customer, _ = StripeAccount(localstripe.url).customer_with_subscription()
    await client.put("/customers/acme", json={"plan": "pro", "stripeCustomer": customer})
    resend = f"/console/invoices/{failed['id']}/resend"
    assert (await client.post(resend, data={})).status_code == 403  # no CSRF token
    answer = await client.post(resend, data={"csrfToken": csrf_of(page.text)})
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/console/invoices/{failed['id']}?resent=1"
    assert (await only_invoice(client, "acme"))["status"] == "draft"
    await bridge_for(store, localstripe, at=now_ms() + LATER).run_once()

    sent = await only_invoice(client, "acme")
    assert sent["status"] == "sent"
    page = await client.get(f"/console/invoices/{failed['id']}")
    provider = sent["provider"]
    assert isinstance(provider, dict)
    for provider_id in (provider["customerId"], provider["invoiceId"], *provider["invoiceItemIds"]):
        assert f'<span class="id">{provider_id}</span>' in page.text
    assert "Resend" not in page.text  # a sent invoice is never sent twice
    # Posted anyway (a stale page): refused with the API's reason, on the page.
    again = await client.post(resend, data={"csrfToken": csrf_of(page.text)})
    assert again.status_code == 409 and "never sent twice" in again.text
    assert re.search(r'role="alert">[^<]*never sent twice', again.text)
