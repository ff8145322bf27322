"""One customer: usage now and its groups, entitlements, the invoice preview and
invoices, usage over recent periods, events (filtered, paged), records."""

from __future__ import annotations

import secrets
from urllib.parse import quote, urlencode

import msgspec
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from meterd.aggregation import AggregationRow, default_period, meters_for
from meterd.billing import list_invoices
from meterd.entitlements import EntitlementOut, entitlements
from meterd.errors import NotFound
from meterd.html.charts import BarChart, bar_chart
from meterd.html.concurrent import concurrently
from meterd.html.console.deps import ConsoleDeps
from meterd.html.params import choice_param, pair_cursor, text_param, time_param
from meterd.html.planned import planned_preview
from meterd.html.shared_reads import shared_reads
from meterd.invoices import InvoiceOut, invoice_out
from meterd.meters.values import GroupValue
from meterd.preview import PreviewOut
from meterd.storage.base import AggregationQuery, EventQuery, InvoiceQuery, Store, StoredEvent
from meterd.timeutil import now_ms
from meterd.usage import UsageOut, usage_history, usage_of

HISTORY_PERIODS = 12
EVENTS_PAGE = 50
RECORDS_SHOWN = 12
INVOICES_SHOWN = 12


class CustomerPage(msgspec.Struct, frozen=True):
    customer_id: str
    self_href: str
    periods: list[str]
    period: str
    meters: list[str]
    usage: UsageOut
    groups: dict[str, list[GroupValue]]
    entitlements: list[EntitlementOut]
    preview: PreviewOut | None
    invoices: list[InvoiceOut]
    invoices_href: str
    charts: list[BarChart]
    event_type: str
    from_text: str
    to_text: str
    events: list[StoredEvent]
    next_events_href: str | None
    records: list[AggregationRow]
    # Prefix of each amend form's Idempotency-Key: a double submit amends once.
    amend_key: str
    # A correction's outcome: what was done, or why it was not.
    notice: str | None = None
    error: str | None = None


def customer_href(customer_id: str) -> str:
    return "/console/customers/" + quote(customer_id, safe="")


def customer_routes(deps: ConsoleDeps) -> list[Route]:
    async def show(request: Request) -> Response:
        customer_id = request.path_params["customerId"]
        page = await customer_page(
            deps, customer_id, request.query_params, notice=_notice(request.query_params)
        )
        return deps.page(request, "customer.html", page, section="Customers")

    return [Route("/customers/{customerId:path}", show, methods=["GET"])]


async def _entitlements(
    deps: ConsoleDeps, store: Store, customer_id: str, now: int
) -> list[EntitlementOut]:
    try:
        return await entitlements(
            store,
            customer_id=customer_id,
            config=deps.config,
            calendars=deps.calendars,
            ops=deps.ops,
            now_ms=now,
        )
    except NotFound:  # an id no event could carry: nothing to show
        return []


def _notice(params: QueryParams) -> str | None:
    """The status line after a correction redirected back here."""
    voided, amended = params.get("voided"), params.get("amended")
    if voided:
        return f"Event {voided} is voided."
    if amended:
        return f"Event {amended} is amended; its replacement is {params.get('replacement', '')}."
    return None


async def customer_page(
    deps: ConsoleDeps,
    customer_id: str,
    params: QueryParams,
    *,
    notice: str | None = None,
    error: str | None = None,
) -> CustomerPage:
    """Everything the customer page shows, with `params` as its filters."""
    period = choice_param(params, "period", deps.calendars, default_period(deps.calendars))
    event_type = params.get("eventType") or ""
    if event_type:
        choice_param(params, "eventType", deps.ops, "")
    calendar = deps.calendars[period]
    now = now_ms()
    query = EventQuery(
        customer_id=customer_id,
        event_type=event_type or None,
        from_ms=time_param(params, "from"),
        to_ms=time_param(params, "to"),
        limit=EVENTS_PAGE,
        before=pair_cursor(params, "cursor"),
        include_voided=True,
    )
    # Independent reads, run side by side: the store's readers work in parallel. The
    # services read some numbers alike (the period's usage): each is read once.
    store = shared_reads(deps.store)
    usage, allowed, preview, invoices, history, events, records = await concurrently(
        usage_of(
            store,
            ops=deps.ops,
            customer_id=customer_id,
            period=period,
            bounds=calendar.bounds_at(now),
            now_ms=now,
            meters=meters_for(deps.config),
        ),
        _entitlements(deps, store, customer_id, now),
        planned_preview(
            store,
            customer_id=customer_id,
            config=deps.config,
            calendars=deps.calendars,
            ops=deps.ops,
            now_ms=now,
        ),
        list_invoices(store, InvoiceQuery(customer_id=customer_id, limit=INVOICES_SHOWN)),
        usage_history(
            store,
            ops=deps.ops,
            customer_id=customer_id,
            calendar=calendar,
            periods=HISTORY_PERIODS,
            now_ms=now,
        ),
        store.list_events(query),
        store.list_aggregations(
            AggregationQuery(customer_id=customer_id, period=period, limit=RECORDS_SHOWN)
        ),
    )
    charts = [
        bar_chart(meter, [(h.bounds.key, h.totals.events.get(meter, 0)) for h in history])
        for meter in deps.ops
    ]
    self_href = customer_href(customer_id)
    next_events_href = None
    if len(events) == EVENTS_PAGE:
        last = events[-1]
        next_events_href = (
            self_href
            + "?"
            + urlencode(
                {
                    "period": period,
                    "eventType": event_type,
                    "from": text_param(params, "from"),
                    "to": text_param(params, "to"),
                    "cursor": f"{last.ts_ms}.{last.seq}",
                }
            )
        )
    return CustomerPage(
        customer_id=customer_id,
        self_href=self_href,
        periods=list(deps.calendars),
        period=period,
        meters=list(deps.ops),
        usage=usage,
        groups=usage.groups or {},
        entitlements=allowed,
        preview=preview,
        invoices=[invoice_out(invoice) for invoice in invoices],
        invoices_href="/console/invoices?" + urlencode({"customerId": customer_id}),
        charts=charts,
        event_type=event_type,
        from_text=text_param(params, "from"),
        to_text=text_param(params, "to"),
        events=events,
        next_events_href=next_events_href,
        records=records,
        amend_key=secrets.token_urlsafe(12),
        notice=notice,
        error=error,
    )
