"""GET /api/v1/meters, /api/v1/meters/{idOrSlug} and its /query: the configured meters."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from meterd.config.model import EventTypeConfig, SystemConfig
from meterd.errors import InvalidRequest, NotFound
from meterd.http.openmeter.query import answer_query
from meterd.http.responses import JSONResponse
from meterd.openmeter.meters import find_meter, meter_out
from meterd.openmeter.query import QueryUsage
from meterd.storage.base import Store


def meters_routes(
    config: SystemConfig, store: Store, *, query_usage: QueryUsage | None, loaded_ms: int
) -> list[Route]:
    meters = [
        meter_out(event_type, meter, loaded_ms=loaded_ms)
        for event_type, meter in config.events.items()
    ]

    async def list_meters(request: Request) -> Response:
        page = _positive(request, "page", 1)
        size = _positive(request, "pageSize", len(meters) or 1)
        start = (page - 1) * size
        return JSONResponse(meters[start : start + size])

    async def get_meter(request: Request) -> Response:
        event_type, meter = _meter(config, request.path_params["idOrSlug"])
        return JSONResponse(meter_out(event_type, meter, loaded_ms=loaded_ms))

    async def query_meter(request: Request) -> Response:
        event_type, meter = _meter(config, request.path_params["idOrSlug"])
        return await answer_query(
            request, store=store, query_usage=query_usage, event_type=event_type, meter=meter
        )

    return [
        Route("/meters", list_meters, methods=["GET"]),
        Route("/meters/{idOrSlug}", get_meter, methods=["GET"]),
        Route("/meters/{idOrSlug}/query", query_meter, methods=["GET"]),
    ]


def _meter(config: SystemConfig, id_or_slug: str) -> tuple[str, EventTypeConfig]:
    found = find_meter(config.events, id_or_slug)
    if found is None:
        raise NotFound(f"no meter has the id or slug {id_or_slug!r}")
    return found


def _positive(request: Request, name: str, default: int) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    if not text.isdigit() or int(text) < 1:
        raise InvalidRequest(f"{name}: must be a positive integer", field=name)
    return int(text)
