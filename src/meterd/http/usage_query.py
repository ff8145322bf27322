"""GET /usage/query: a meter's usage per window, customer and group, as JSON or CSV."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from meterd.config.model import SystemConfig
from meterd.http.params import time_param
from meterd.http.responses import JSONResponse
from meterd.meters.query import query_csv, run_usage_query, usage_query
from meterd.storage.base import Store
from meterd.timeutil import now_ms


def usage_query_routes(config: SystemConfig, store: Store) -> list[Route]:
    async def query(request: Request) -> Response:
        params = request.query_params
        checked = usage_query(
            config,
            meter=params.get("meter"),
            from_ms=time_param(params, "from"),
            to_ms=time_param(params, "to"),
            now_ms=now_ms(),
            window_size=params.get("windowSize"),
            window_time_zone=params.get("windowTimeZone"),
            customer_ids=[c for c in params.getlist("customerId") if c],
            group_by=[g for g in params.getlist("groupBy") if g],
            filters=params.getlist("filter"),
        )
        result = await run_usage_query(store, config, checked)
        if "text/csv" in request.headers.get("accept", ""):
            return Response(query_csv(checked, result), media_type="text/csv; charset=utf-8")
        return JSONResponse(result)

    return [Route("/usage/query", query, methods=["GET"])]
