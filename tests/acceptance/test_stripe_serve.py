"""From config alone to a Stripe invoice: `meterd serve` as a subprocess, localstripe on
127.0.0.1, the Stripe key only in METERD_STRIPE_API_KEY."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from meterd.cli import main
from meterd.closing import PeriodCloser
from meterd.config.loader import load_config
from meterd.storage.base import InvoiceQuery
from meterd.storage.sqlite.store import SQLiteStore
from meterd.timeutil import now_ms
from tests.acceptance.server import MeterdProcess
from tests.localstripe_server import API_KEY, LocalStripe, StripeAccount, shared_localstripe
from tests.plans_support import PRO, close_until_done

pytestmark = pytest.mark.slow

KEY = "mk_acceptance_stripe"
LATER = 40 * 86_400_000


@pytest.fixture
def localstripe() -> LocalStripe:
    return shared_localstripe()


def wait_for_status(server: MeterdProcess, customer: str, status: str) -> dict[str, object]:
    deadline = time.monotonic() + 15
    while True:
        answer = httpx.get(
            server.url + "/invoices", params={"customerId": customer}, headers={"x-apikey": KEY}
        )
        [invoice] = answer.json()
        if invoice["status"] == status or time.monotonic() > deadline:
            assert invoice["status"] == status, invoice
            return dict(invoice)
        time.sleep(0.1)


def test_events_to_a_stripe_invoice_with_config_alone(
    tmp_path: Path, localstripe: LocalStripe
) -> None:
    stripe = StripeAccount(localstripe.url)
    stripe_customer, subscription = stripe.customer_with_subscription()
    config = tmp_path / "systemconfig.json"
    config.write_text(
        json.dumps(
            {
                "periods": ["daily", "monthly"],
                "events": {"api.calls": {"op": "sum"}, "storage.bytes": {"op": "max"}},
                "plans": {"pro": PRO},
                "invoicing": {"stripe": {"apiBase": localstripe.url}},
            }
        )
    )
    env = {"METERD_API_KEYS": KEY, "METERD_STRIPE_API_KEY": API_KEY, "METERD_DATABASE_URL": ""}
    server = MeterdProcess(tmp_path, "--config", str(config), env=env)
    headers = {"x-apikey": KEY}
    with server:
        # The customer id is the Stripe subscription: meterd finds the Stripe customer.
        put = httpx.put(
            f"{server.url}/customers/{subscription}", json={"plan": "pro"}, headers=headers
        )
        assert put.status_code == 201, put.text
        for value in (12000, 345):
            httpx.post(
                server.url + "/usage/api.calls",
                json={"customerId": subscription, "value": value},
                headers=headers,
            ).raise_for_status()
        preview = httpx.get(
            f"{server.url}/customers/{subscription}/invoice-preview", headers=headers
        )
        assert preview.json()["totalMinorUnits"] == 5135
        shown = httpx.get(server.url + "/config", headers=headers)
        assert API_KEY not in shown.text
        assert shown.json()["invoicing"]["stripe"]["apiKey"] == "********"

    # The month ends: closing it (here ahead of time, with meterd's own closer on the same
    # database and config) writes the invoice record, due then; `resend` makes it due now.
    async def close_month() -> str:
        store = SQLiteStore(str(tmp_path / "meterd.db"))
        await store.open()
        try:
            await close_until_done(PeriodCloser(store, load_config(config)), now_ms() + LATER)
            [invoice] = await store.list_invoices(InvoiceQuery())
        finally:
            await store.close()
        return invoice.id

    invoice_id = asyncio.run(close_month())
    database = f"sqlite:///{tmp_path / 'meterd.db'}"
    resent = CliRunner().invoke(main, ["invoices", "resend", invoice_id, "--db", database])
    assert resent.exit_code == 0, resent.output
    with server:
        sent = wait_for_status(server, subscription, "sent")
        assert sent["totalMinorUnits"] == 5135
        provider = sent["provider"]
        assert isinstance(provider, dict)
        assert provider["customerId"] == stripe_customer
        [stripe_invoice] = stripe.invoices(stripe_customer)
        assert stripe_invoice["id"] == provider["invoiceId"]
        assert stripe_invoice["amount_due"] == 5135

    # A restart and a re-trigger create no second Stripe invoice.
    with server:
        trigger = httpx.post(server.url + "/aggregations/trigger", headers=headers)
        assert trigger.status_code == 202
        time.sleep(2.5)  # two polls of the bridge
        assert wait_for_status(server, subscription, "sent") == sent
    assert len(stripe.invoices(stripe_customer)) == 1
    assert API_KEY not in server.read_output()
