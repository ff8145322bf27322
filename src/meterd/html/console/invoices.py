"""Invoices: every customer's, filtered by status or customer and paged; one invoice,
and re-sending a draft or failed one to the payment provider.

Through `meterd/billing.py`, as `GET /invoices`, `GET /invoices/{id}` and
`POST /invoices/{id}/resend` are.
"""

from __future__ import annotations

from urllib.parse import urlencode

import msgspec
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from meterd.billing import get_invoice, invoice_status, list_invoices, resend_invoice
from meterd.errors import MeterdError, NotFound, status_code_of
from meterd.html.console.deps import ConsoleDeps
from meterd.html.params import int_param, text_param
from meterd.invoices import INVOICE_STATUSES, InvoiceOut, invoice_out
from meterd.storage.base import InvoiceQuery
from meterd.timeutil import now_ms

PAGE_SIZE = 50


class InvoicesPage(msgspec.Struct, frozen=True):
    statuses: list[str]
    status: str
    customer_id: str
    invoices: list[InvoiceOut]
    next_href: str | None


class InvoicePage(msgspec.Struct, frozen=True):
    invoice: InvoiceOut
    provider: str | None  # the configured payment provider, if any
    notice: str | None = None
    error: str | None = None


def invoice_routes(deps: ConsoleDeps) -> list[Route]:
    async def show_all(request: Request) -> Response:
        params = request.query_params
        status = invoice_status(params.get("status"))
        customer_id = text_param(params, "customerId")
        before_start = int_param(params, "beforeStart")
        before_id = text_param(params, "beforeId")
        query = InvoiceQuery(
            customer_id=customer_id or None,
            status=status,
            limit=PAGE_SIZE,
            before=None if before_start is None else (before_start, before_id),
        )
        invoices = await list_invoices(deps.store, query)
        next_href = None
        if len(invoices) == PAGE_SIZE:
            last = invoices[-1]
            next_href = "/console/invoices?" + urlencode(
                {
                    "status": status or "",
                    "customerId": customer_id,
                    "beforeStart": last.period_start,
                    "beforeId": last.id,
                }
            )
        page = InvoicesPage(
            statuses=list(INVOICE_STATUSES),
            status=status or "",
            customer_id=customer_id,
            invoices=[invoice_out(invoice) for invoice in invoices],
            next_href=next_href,
        )
        return deps.page(request, "invoices.html", page, section="Invoices")

    async def show_one(request: Request) -> Response:
        invoice_id = request.path_params["id"]
        notice = "It is due to be sent now." if request.query_params.get("resent") else None
        return await invoice_page(request, invoice_id, notice=notice)

    async def invoice_page(
        request: Request,
        invoice_id: str,
        *,
        notice: str | None = None,
        error: str | None = None,
        status_code: int = 200,
    ) -> Response:
        invoice = invoice_out(await get_invoice(deps.store, invoice_id))
        page = InvoicePage(invoice, provider, notice=notice, error=error)
        return deps.page(request, "invoice.html", page, section="Invoices", status_code=status_code)

    async def resend(request: Request) -> Response:
        invoice_id = request.path_params["id"]
        try:
            await resend_invoice(deps.store, invoice_id, provider=provider, now_ms=now_ms())
        except MeterdError as error:
            if isinstance(error, NotFound) or status_code_of(error) >= 500:
                raise
            return await invoice_page(
                request, invoice_id, error=error.message, status_code=status_code_of(error)
            )
        deps.on_resend()
        return RedirectResponse(f"/console/invoices/{invoice_id}?resent=1", status_code=303)

    provider = None if deps.config.invoicing.stripe is None else "stripe"
    return [
        Route("/invoices", show_all, methods=["GET"]),
        Route("/invoices/{id}", show_one, methods=["GET"]),
        Route("/invoices/{id}/resend", resend, methods=["POST"]),
    ]
