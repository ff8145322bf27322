"""Invoice records for the API and the CLI: listing, one invoice, re-sending."""

from __future__ import annotations

from meterd.errors import Conflict, InvalidRequest, NotFound
from meterd.invoices import INVOICE_ID, INVOICE_STATUSES, InvoiceRecord, InvoiceStatus
from meterd.storage.base import InvoiceQuery, Store


def invoice_status(text: str | None) -> InvoiceStatus | None:
    if not text:
        return None
    for status in INVOICE_STATUSES:
        if text == status:
            return status
    raise InvalidRequest(f"status: must be one of {', '.join(INVOICE_STATUSES)}", field="status")


async def list_invoices(store: Store, query: InvoiceQuery) -> list[InvoiceRecord]:
    return await store.list_invoices(query)


def _checked_id(invoice_id: str) -> str:
    """An id that cannot be an invoice's (it came from a URL) is simply not found."""
    if not INVOICE_ID.fullmatch(invoice_id):
        raise NotFound(f"no invoice {invoice_id!r}")
    return invoice_id


async def get_invoice(store: Store, invoice_id: str) -> InvoiceRecord:
    invoice = await store.get_invoice(_checked_id(invoice_id))
    if invoice is None:
        raise NotFound(f"no invoice {invoice_id!r}")
    return invoice


async def resend_invoice(
    store: Store, invoice_id: str, *, provider: str | None, now_ms: int
) -> InvoiceRecord:
    """Send a draft or failed invoice to the payment provider again, now.

    A sent invoice is never sent twice (Conflict); without a provider configured there
    is nothing to send it to (Conflict).
    """
    _checked_id(invoice_id)
    if provider is None:
        raise Conflict("no payment provider is configured (invoicing.stripe in the config)")
    invoice = await store.resend_invoice(invoice_id, provider=provider, now_ms=now_ms)
    if invoice is None:
        raise NotFound(f"no invoice {invoice_id!r}")
    if invoice.status == "sent":
        raise Conflict(
            f"invoice {invoice_id} was already sent as {invoice.provider_invoice}; "
            "it is never sent twice",
            providerInvoice=invoice.provider_invoice,
        )
    return invoice
