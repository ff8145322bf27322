"""The Stripe bridge: turns each draft invoice record into one Stripe invoice.

Per record: resolve the Stripe customer (a `sub_...` customer id through its
subscription), create one invoice item per line, then one invoice that takes the
customer's pending items. Never a second Stripe invoice for one record:

- meterd's own state decides first: a record is claimed (SKIP LOCKED and a lease) before
  it is worked on, item ids are saved as they are created, and a record once `sent` is
  never claimed again, across retries, restarts and processes;
- every POST carries an Idempotency-Key derived from the record and the line, so a
  request repeated after a crash (within Stripe's 24 hours) returns the first result;
- before an invoice is created again after an attempt that may have created it, the
  customer's Stripe invoices are searched for this record's id.

Failures are retried on the webhook schedule (5s, 5m, 30m, ...), recorded on the invoice
(`attempts`, `lastError`, `nextAttemptAt`) and end `failed`, from where
`POST /invoices/{id}/resend` (or `meterd invoices resend`) starts again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

import httpx

from meterd.background import cancel_and_wait
from meterd.config.model import DEFAULT_RETRY_SCHEDULE_MS, SystemConfig
from meterd.invoices import InvoiceRecord
from meterd.invoicing.stripe import StripeClient, StripeError
from meterd.pricing import to_minor_units
from meterd.settings import ServerSettings
from meterd.storage.base import InvoiceAttempt, Store
from meterd.timeutil import now_ms

log = logging.getLogger("meterd.invoicing")

PROVIDER = "stripe"
# Longer than any one record's calls take; a crashed process's claims expire after it.
LEASE_MS = 300_000
CLAIM_BATCH = 8
# Set in provider_items before the invoice is requested: a later attempt looks for it first.
INVOICE_REQUESTED = "invoice_requested"


class StripeBridge:
    """Claims due invoice records and sends them to Stripe, one at a time."""

    def __init__(
        self,
        store: Store,
        *,
        api_base: str,
        api_key: str | None,
        auto_advance: bool | None = None,
        poll_interval_s: float = 1.0,
        retry_schedule_ms: Sequence[int] = DEFAULT_RETRY_SCHEDULE_MS,
        clock: Callable[[], int] = now_ms,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.store = store
        self.api_base = api_base
        self.api_key = api_key
        self.auto_advance = auto_advance
        self.poll_interval_s = poll_interval_s
        self.retry_schedule_ms = tuple(retry_schedule_ms)
        self.clock = clock
        self.transport = transport
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="meterd-stripe-bridge")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:
                log.exception("sending invoices to Stripe failed")
            self._wake.clear()
            try:
                async with asyncio.timeout(self.poll_interval_s):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def run_once(self) -> int:
        """Send every invoice due now; returns how many were attempted."""
        attempted = 0
        async with httpx.AsyncClient(transport=self.transport) as http:
            while True:
                claimed = await self.store.claim_invoices(
                    now_ms=self.clock(), limit=CLAIM_BATCH, lease_ms=LEASE_MS
                )
                for invoice in claimed:
                    await self.send(http, invoice)
                attempted += len(claimed)
                if len(claimed) < CLAIM_BATCH:
                    return attempted

    async def send(self, http: httpx.AsyncClient, invoice: InvoiceRecord) -> None:
        """One attempt at one claimed record; its outcome is recorded whatever happens."""
        try:
            if not self.api_key:
                raise StripeError(
                    "no Stripe API key: set invoicing.stripe.apiKey or METERD_STRIPE_API_KEY"
                )
            client = StripeClient(http, api_base=self.api_base, api_key=self.api_key)
            stripe_invoice = await self._send(client, invoice)
        except StripeError as error:
            await self._failed(invoice, str(error))
            return
        except Exception as error:  # a bug or the database: retried like Stripe trouble
            log.exception("invoice %s: unexpected error", invoice.id)
            await self._failed(invoice, f"unexpected error: {type(error).__name__}")
            return
        log.info("invoice %s sent to Stripe as %s", invoice.id, stripe_invoice)
        await self.store.finish_invoice_attempt(
            InvoiceAttempt(
                invoice_id=invoice.id,
                status="sent",
                now_ms=self.clock(),
                provider_invoice=stripe_invoice,
            )
        )

    async def _failed(self, invoice: InvoiceRecord, message: str) -> None:
        done = invoice.attempts + 1
        now = self.clock()
        later = done <= len(self.retry_schedule_ms)
        log.warning("invoice %s: attempt %d failed: %s", invoice.id, done, message)
        await self.store.finish_invoice_attempt(
            InvoiceAttempt(
                invoice_id=invoice.id,
                status="draft" if later else "failed",
                now_ms=now,
                next_attempt_ms=now + self.retry_schedule_ms[done - 1] if later else None,
                last_error=message,
            )
        )

    async def _send(self, client: StripeClient, invoice: InvoiceRecord) -> str:
        customer = invoice.provider_customer or await self._stripe_customer(client, invoice)
        items = dict(invoice.provider_items)
        await self.store.save_invoice_progress(
            invoice.id, provider_customer=customer, provider_items=items
        )
        for index, line in enumerate(invoice.lines):
            if str(index) in items:
                continue
            item = await client.post(
                "/v1/invoiceitems",
                {
                    "customer": customer,
                    "amount": str(to_minor_units(line.amount, invoice.currency)),
                    "currency": invoice.currency,
                    "description": line.description,
                    "metadata[meterd_invoice_id]": invoice.id,
                    "metadata[meterd_line]": str(index),
                },
                idempotency_key=f"meterd-{invoice.id}-line-{index}",
            )
            items[str(index)] = str(item["id"])
            await self.store.save_invoice_progress(
                invoice.id, provider_customer=customer, provider_items=items
            )
        if INVOICE_REQUESTED in items:
            existing = await _find_invoice(client, customer, invoice.id)
            if existing is not None:
                return existing
        items[INVOICE_REQUESTED] = "1"
        await self.store.save_invoice_progress(
            invoice.id, provider_customer=customer, provider_items=items
        )
        form = {
            "customer": customer,
            "pending_invoice_items_behavior": "include",
            "description": _description(invoice),
            "metadata[meterd_invoice_id]": invoice.id,
            "metadata[meterd_period]": f"{invoice.period} {invoice.period_key}",
        }
        if self.auto_advance is not None:
            form["auto_advance"] = "true" if self.auto_advance else "false"
        created = await client.post(
            "/v1/invoices", form, idempotency_key=f"meterd-{invoice.id}-invoice"
        )
        return str(created["id"])

    async def _stripe_customer(self, client: StripeClient, invoice: InvoiceRecord) -> str:
        customer = await self.store.get_customer(invoice.customer_id)
        if customer is not None and customer.stripe_customer:
            return customer.stripe_customer
        if invoice.customer_id.startswith("sub_"):
            subscription = await client.get(f"/v1/subscriptions/{invoice.customer_id}")
            found = subscription.get("customer")
            if isinstance(found, dict):
                found = found.get("id")
            if isinstance(found, str) and found:
                return found
            raise StripeError(f"subscription {invoice.customer_id} names no customer")
        raise StripeError(
            f"customer {invoice.customer_id!r} has no stripeCustomer and is not a Stripe "
            "subscription id (sub_...): set it with PUT /customers/{id}"
        )


def _description(invoice: InvoiceRecord) -> str:
    # The record id is in the description too: localstripe keeps no invoice metadata.
    return f"{invoice.plan} {invoice.period} {invoice.period_key} (meterd {invoice.id})"


async def _find_invoice(client: StripeClient, customer: str, invoice_id: str) -> str | None:
    """A Stripe invoice an earlier attempt created for this record, if any."""
    listed = await client.get("/v1/invoices", {"customer": customer, "limit": "100"})
    for candidate in listed.get("data") or []:
        if not isinstance(candidate, dict):
            continue
        metadata = candidate.get("metadata") or {}
        if metadata.get("meterd_invoice_id") == invoice_id or f"(meterd {invoice_id})" in str(
            candidate.get("description") or ""
        ):
            return str(candidate["id"])
    return None


def stripe_bridge(
    settings: ServerSettings, config: SystemConfig, store: Store
) -> StripeBridge | None:
    """The bridge `meterd serve` runs, when `invoicing.stripe` is configured and workers run."""
    stripe = config.invoicing.stripe
    if stripe is None or settings.delivery_poll_s is None:
        return None
    return StripeBridge(
        store,
        api_base=stripe.api_base,
        api_key=settings.stripe_api_key or stripe.api_key,
        auto_advance=stripe.auto_advance,
        poll_interval_s=settings.delivery_poll_s,
    )
