"""The overview: events over the last day, customers, open periods, the outbox."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from meterd.html.charts import BarChart, bar_chart
from meterd.html.console.deps import ConsoleDeps
from meterd.overview import overview
from meterd.timeutil import now_ms


class PeriodRow(msgspec.Struct, frozen=True):
    name: str
    key: str
    start_ms: int
    last_ms: int
    closed_until_ms: int | None


class OverviewPage(msgspec.Struct, frozen=True):
    customers: int
    customers_capped: bool
    deliveries_pending: int
    deliveries_failed: int
    events_last_day: int
    events_chart: BarChart
    periods: list[PeriodRow]


def overview_routes(deps: ConsoleDeps) -> list[Route]:
    async def show(request: Request) -> Response:
        found = await overview(deps.store, calendars=deps.calendars, now_ms=now_ms())
        chart = bar_chart(
            "Events per hour, last 24 hours (UTC)",
            [(_hour_label(start), count) for start, count in found.hourly_events],
        )
        page = OverviewPage(
            customers=found.customers,
            customers_capped=found.customers_capped,
            deliveries_pending=found.deliveries_pending,
            deliveries_failed=found.deliveries_failed,
            events_last_day=sum(count for _, count in found.hourly_events),
            events_chart=chart,
            periods=[
                PeriodRow(
                    p.name, p.current.key, p.current.start_ms, p.current.last_ms, p.closed_until_ms
                )
                for p in found.periods
            ],
        )
        return deps.page(request, "overview.html", page, section="Overview")

    return [Route("/", show, methods=["GET"])]


def _hour_label(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%d %b %H:00")
