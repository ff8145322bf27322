"""Customers: search by id, each with the current period's usage."""

from __future__ import annotations

from urllib.parse import urlencode

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from meterd.aggregation import default_period
from meterd.customer_list import customers_page
from meterd.html.console.deps import ConsoleDeps
from meterd.html.params import text_param
from meterd.timeutil import now_ms
from meterd.usage import UsageOut

PAGE_SIZE = 50


class CustomersPage(msgspec.Struct, frozen=True):
    search: str
    period: str
    meters: list[str]
    usages: list[UsageOut]
    next_href: str | None


def customers_routes(deps: ConsoleDeps) -> list[Route]:
    async def show(request: Request) -> Response:
        search = text_param(request.query_params, "search")
        after = text_param(request.query_params, "after")
        period = default_period(deps.calendars)
        found = await customers_page(
            deps.store,
            ops=deps.ops,
            period=period,
            calendar=deps.calendars[period],
            search=search,
            after=after,
            limit=PAGE_SIZE,
            now_ms=now_ms(),
        )
        next_href = None
        if found.next_after is not None:
            next_href = "/console/customers?" + urlencode(
                {"search": search, "after": found.next_after}
            )
        page = CustomersPage(search, period, list(deps.ops), found.usages, next_href)
        return deps.page(request, "customers.html", page, section="Customers")

    return [Route("/customers", show, methods=["GET"])]
