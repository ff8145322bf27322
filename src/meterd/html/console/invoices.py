"""Invoices: every customer's, filtered by status or customer and paged, and one invoice.

Read through `meterd/billing.py`, as `GET /invoices` and `GET /invoices/{id}` are.
"""

from __future__ import annotations

from urllib.parse import urlencode

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from meterd.billing import get_invoice, invoice_status, list_invoices
from meterd.errors import NotFound
from meterd.html.console.deps import ConsoleDeps
from meterd.html.params import int_param, text_param
from meterd.invoices import INVOICE_ID, INVOICE_STATUSES, InvoiceOut, invoice_out
from meterd.storage.base import InvoiceQuery

PAGE_SIZE = 50


class InvoicesPage(msgspec.Struct, frozen=True):
    statuses: list[str]
    status: str
    customer_id: str
    invoices: list[InvoiceOut]
    next_href: str | None


class InvoicePage(msgspec.Struct, frozen=True):
    invoice: InvoiceOut


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
        if not INVOICE_ID.fullmatch(invoice_id):
            raise NotFound(f"no invoice {invoice_id!r}")
        invoice = invoice_out(await get_invoice(deps.store, invoice_id))
        return deps.page(request, "invoice.html", InvoicePage(invoice), section="Invoices")

    return [
        Route("/invoices", show_all, methods=["GET"]),
        Route("/invoices/{id}", show_one, methods=["GET"]),
    ]
