"""The portal as a Starlette app of its own: the token in the path is the only auth."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from meterd.config.model import Op, SystemConfig
from meterd.errors import MeterdError, PortalLinkInvalid
from meterd.html.charts import BarChart, bar_chart
from meterd.html.errors import error_handlers
from meterd.html.portal.data import PortalUsage, portal_usage
from meterd.html.render import Renderer
from meterd.html.security import SecurityHeaders
from meterd.periods import PeriodCalendar
from meterd.portal_tokens import PortalGrant, portal_grant
from meterd.storage.base import Store
from meterd.timeutil import now_ms
from meterd.usage import UsageOut


@dataclass(frozen=True)
class PortalDeps:
    store: Store
    config: SystemConfig
    calendars: dict[str, PeriodCalendar]
    ops: dict[str, Op]
    renderer: Renderer


class PortalPage(msgspec.Struct, frozen=True):
    customer_id: str
    period: str
    meters: list[str]
    usage: UsageOut
    data: PortalUsage
    charts: list[BarChart]
    csv_href: str
    json_href: str
    expires_ms: int


def portal_app(deps: PortalDeps) -> ASGIApp:
    async def grant_of(request: Request) -> PortalGrant:
        return await portal_grant(
            deps.store,
            token=request.path_params["token"],
            known_meters=list(deps.ops),
            now_ms=now_ms(),
        )

    async def grant_usage(grant: PortalGrant) -> tuple[PortalUsage, UsageOut]:
        return await portal_usage(
            deps.store,
            grant=grant,
            config=deps.config,
            calendars=deps.calendars,
            ops=deps.ops,
            now_ms=now_ms(),
        )

    async def page(request: Request) -> Response:
        grant = await grant_of(request)
        data, usage = await grant_usage(grant)
        charts = [
            bar_chart(meter, [(h.period_key, h.values.get(meter, 0)) for h in data.history])
            for meter in grant.meters
        ]
        base = "/portal/" + request.path_params["token"]
        return deps.renderer.response(
            "portal.html",
            PortalPage(
                customer_id=grant.customer_id,
                period=data.period,
                meters=list(grant.meters),
                usage=usage,
                data=data,
                charts=charts,
                csv_href=base + "/usage.csv",
                json_href=base + "/usage.json",
                expires_ms=grant.expires_ms,
            ),
        )

    async def usage_json(request: Request) -> Response:
        grant = await grant_of(request)
        data, _ = await grant_usage(grant)
        return Response(msgspec.json.encode(data), media_type="application/json")

    async def usage_csv(request: Request) -> Response:
        grant = await grant_of(request)
        data, _ = await grant_usage(grant)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(
            ["customerId", "periodKey", "periodStart", "periodEnd", "meter", "value", "events"]
        )
        for row in data.history:
            for meter in grant.meters:
                writer.writerow(
                    [
                        _csv_safe(grant.customer_id),
                        row.period_key,
                        row.period_start,
                        row.period_end,
                        meter,
                        row.values.get(meter, 0),
                        row.event_counts.get(meter, 0),
                    ]
                )
        return Response(
            out.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="usage.csv"'},
        )

    handlers = error_handlers(deps.renderer, back_href=None, back_label="")
    html_error = handlers[MeterdError]

    async def link_error(request: Request, exc: Exception) -> Response:
        if request.url.path.endswith((".json", ".csv")):
            assert isinstance(exc, PortalLinkInvalid)
            return Response(
                msgspec.json.encode({"error": exc.message}),
                status_code=401,
                media_type="application/json",
            )
        return await html_error(request, exc)

    app = Starlette(
        routes=[
            Route("/{token}", page, methods=["GET"]),
            Route("/{token}/usage.json", usage_json, methods=["GET"]),
            Route("/{token}/usage.csv", usage_csv, methods=["GET"]),
        ],
        exception_handlers={**handlers, PortalLinkInvalid: link_error},
    )
    # Outside the app, so that server errors carry the headers too.
    return SecurityHeaders(app, frame_ancestors=deps.config.portal.frame_ancestors)


def _csv_safe(text: str) -> str:
    """A cell a spreadsheet will not run as a formula (customer ids are user input)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
