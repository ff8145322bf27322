"""Invoice records: what a customer owes for one plan period, priced when the period closes.

Pure: storage calls `PeriodInvoicing.drafts` inside the close's transaction with the
records it is writing, and stores what comes back together with their outbox rows.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Literal

import msgspec

from meterd.aggregation import Totals
from meterd.config.model import SystemConfig, WebhookConfig
from meterd.config.plans import Plan
from meterd.periods import PeriodBounds
from meterd.pricing import GroupUsage, InvoiceLine, PricedInvoice, price_plan, to_minor_units
from meterd.timeutil import format_ms

InvoiceStatus = Literal["draft", "sent", "failed"]
INVOICE_ID = re.compile(r"inv_[0-9a-f]{24}")
INVOICE_STATUSES: tuple[InvoiceStatus, ...] = ("draft", "sent", "failed")


class InvoiceRecord(msgspec.Struct, frozen=True):
    """An invoice as stored. `provider_items` maps a line's index to its provider item id."""

    id: str
    customer_id: str
    plan: str
    period: str
    period_key: str
    period_start: int
    period_end: int  # exclusive
    revision: int
    currency: str
    total: Decimal
    lines: tuple[InvoiceLine, ...]
    status: InvoiceStatus
    created_ms: int
    updated_ms: int
    provider: str | None = None
    provider_customer: str | None = None
    provider_invoice: str | None = None
    provider_items: dict[str, str] = {}
    attempts: int = 0
    next_attempt_ms: int | None = None
    last_error: str | None = None
    sent_ms: int | None = None


class ProviderOut(msgspec.Struct, rename="camel", omit_defaults=True):
    name: str
    customer_id: str | None = None
    invoice_id: str | None = None
    invoice_item_ids: list[str] = []


class InvoiceOut(msgspec.Struct, rename="camel"):
    """An invoice as the API and the `invoice.created` webhook show it."""

    id: str
    customer_id: str
    plan: str
    period: str
    period_key: str
    period_start: str
    period_end: str
    revision: int
    currency: str
    total: Decimal
    total_minor_units: int
    lines: tuple[InvoiceLine, ...]
    status: InvoiceStatus
    provider: ProviderOut | None
    attempts: int
    next_attempt_at: str | None
    last_error: str | None
    created_at: str
    updated_at: str
    sent_at: str | None


def invoice_out(invoice: InvoiceRecord) -> InvoiceOut:
    provider = None
    if invoice.provider is not None:
        provider = ProviderOut(
            name=invoice.provider,
            customer_id=invoice.provider_customer,
            invoice_id=invoice.provider_invoice,
            invoice_item_ids=line_items(invoice.provider_items),
        )
    waiting = invoice.status == "draft" and invoice.next_attempt_ms is not None
    return InvoiceOut(
        id=invoice.id,
        customer_id=invoice.customer_id,
        plan=invoice.plan,
        period=invoice.period,
        period_key=invoice.period_key,
        period_start=format_ms(invoice.period_start),
        period_end=format_ms(invoice.period_end - 1),
        revision=invoice.revision,
        currency=invoice.currency,
        total=invoice.total,
        total_minor_units=to_minor_units(invoice.total, invoice.currency),
        lines=invoice.lines,
        status=invoice.status,
        provider=provider,
        attempts=invoice.attempts,
        next_attempt_at=format_ms(invoice.next_attempt_ms)
        if waiting and invoice.next_attempt_ms is not None
        else None,
        last_error=invoice.last_error,
        created_at=format_ms(invoice.created_ms),
        updated_at=format_ms(invoice.updated_ms),
        sent_at=None if invoice.sent_ms is None else format_ms(invoice.sent_ms),
    )


def line_items(provider_items: Mapping[str, str]) -> list[str]:
    """The provider's item ids in line order (other keys are the bridge's own marks)."""
    lines = sorted(int(key) for key in provider_items if key.isdigit())
    return [provider_items[str(line)] for line in lines]


def invoice_id(customer_id: str, period: str, period_key: str, revision: int) -> str:
    """Stable for a customer period and revision: a close that runs twice writes it once."""
    digest = hashlib.sha256(f"{customer_id}\n{period}\n{period_key}\n{revision}".encode())
    return "inv_" + digest.hexdigest()[:24]


def usage_of(totals: Totals | None) -> dict[str, int | float]:
    return {} if totals is None else dict(totals.events)


def groups_of(totals: Totals | None) -> dict[str, list[GroupUsage]]:
    """Per-group quantities of meters with `groupBy`, for charges with `byGroup` prices."""
    if totals is None:
        return {}
    return {
        meter: [GroupUsage(dimensions=dict(g.dimensions), quantity=g.value) for g in groups]
        for meter, groups in totals.groups.items()
    }


class PeriodInvoicing(msgspec.Struct, frozen=True):
    """What a close needs to invoice: the plans, the webhooks and the payment provider."""

    plans: dict[str, Plan]
    webhooks: tuple[WebhookConfig, ...] = ()
    provider: str | None = None

    def plans_for(self, period: str) -> set[str]:
        return {name for name, plan in self.plans.items() if plan.period == period}

    def drafts(
        self,
        *,
        period: str,
        bounds: PeriodBounds,
        totals: Mapping[str, Totals],
        plan_of: Mapping[str, str],
        now_ms: int,
    ) -> list[InvoiceRecord]:
        """One invoice per customer whose plan in force at the period start has this period.

        Customers without events get one too when their plan has a base fee or minimum.
        """
        drafts = []
        for customer_id in sorted(plan_of):
            plan = self.plans.get(plan_of[customer_id])
            if plan is None or plan.period != period:
                continue
            customer_totals = totals.get(customer_id)
            priced = price_plan(
                plan, usage=usage_of(customer_totals), groups=groups_of(customer_totals)
            )
            if customer_totals is None and not priced.total:
                continue
            drafts.append(
                draft_invoice(
                    customer_id=customer_id,
                    plan=plan,
                    bounds=bounds,
                    priced=priced,
                    revision=1,
                    provider=self.provider,
                    now_ms=now_ms,
                )
            )
        return drafts

    def adjustment(
        self, previous: Sequence[InvoiceRecord], *, totals: Totals, now_ms: int
    ) -> InvoiceRecord | None:
        """After a revision of a period these invoices billed: the invoice for the difference,
        priced with the plan that billed the period (None if nothing changed)."""
        if not previous:
            return None
        first = previous[0]
        plan = self.plans.get(first.plan)
        if plan is None:
            return None
        bounds = PeriodBounds(first.period_key, first.period_start, first.period_end)
        return adjustment_invoice(
            previous, plan=plan, bounds=bounds, totals=totals, provider=self.provider, now_ms=now_ms
        )


def draft_invoice(
    *,
    customer_id: str,
    plan: Plan,
    bounds: PeriodBounds,
    priced: PricedInvoice,
    revision: int,
    provider: str | None,
    now_ms: int,
) -> InvoiceRecord:
    return InvoiceRecord(
        id=invoice_id(customer_id, plan.period, bounds.key, revision),
        customer_id=customer_id,
        plan=plan.name,
        period=plan.period,
        period_key=bounds.key,
        period_start=bounds.start_ms,
        period_end=bounds.end_ms,
        revision=revision,
        currency=priced.currency,
        total=priced.total,
        lines=priced.lines,
        status="draft",
        created_ms=now_ms,
        updated_ms=now_ms,
        provider=provider,
        next_attempt_ms=now_ms if provider is not None else None,
    )


def adjustment_invoice(
    previous: Sequence[InvoiceRecord],
    *,
    plan: Plan,
    bounds: PeriodBounds,
    totals: Totals,
    provider: str | None,
    now_ms: int,
) -> InvoiceRecord | None:
    """After a revision of a closed period: an invoice for the difference between what the
    revised totals cost and what the earlier invoices of that period already charged.

    None when nothing changed. Lines are the new price's lines followed by a credit line
    for what was invoiced before; the minimum applies to the period as a whole.
    """
    if not previous:
        return None
    priced = price_plan(plan, usage=usage_of(totals), groups=groups_of(totals))
    invoiced = sum((invoice.total for invoice in previous), Decimal(0))
    difference = priced.total - invoiced
    if not difference:
        return None
    revision = max(invoice.revision for invoice in previous) + 1
    credit = InvoiceLine(
        kind="usage",
        description=f"already invoiced for {bounds.key}",
        amount=-invoiced,
    )
    adjusted = PricedInvoice(
        currency=priced.currency, lines=(*priced.lines, credit), total=difference
    )
    return draft_invoice(
        customer_id=previous[0].customer_id,
        plan=plan,
        bounds=bounds,
        priced=adjusted,
        revision=revision,
        provider=provider,
        now_ms=now_ms,
    )


def period_invoicing(config: SystemConfig, *, stripe: bool) -> PeriodInvoicing | None:
    """What closes invoice with, or None without plans."""
    if not config.plans:
        return None
    return PeriodInvoicing(
        plans=config.plans, webhooks=config.webhooks, provider="stripe" if stripe else None
    )


_lines_encoder = msgspec.json.Encoder()
_lines_decoder = msgspec.json.Decoder(tuple[InvoiceLine, ...])


def encode_lines(lines: Sequence[InvoiceLine]) -> str:
    return _lines_encoder.encode(lines).decode()


def decode_lines(text: str | bytes) -> tuple[InvoiceLine, ...]:
    return _lines_decoder.decode(text)
