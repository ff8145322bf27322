"""GET /api/v1/meters and GET /api/v1/meters/{idOrSlug}: the configured meters."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from meterd.config.model import SystemConfig
from meterd.errors import InvalidRequest, NotFound
from meterd.http.responses import JSONResponse
from meterd.openmeter.meters import find_meter, meter_out


def meters_routes(config: SystemConfig, *, loaded_ms: int) -> list[Route]:
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
        id_or_slug = request.path_params["idOrSlug"]
        found = find_meter(config.events, id_or_slug)
        if found is None:
            raise NotFound(f"no meter has the id or slug {id_or_slug!r}")
        event_type, meter = found
        return JSONResponse(meter_out(event_type, meter, loaded_ms=loaded_ms))

    return [
        Route("/meters", list_meters, methods=["GET"]),
        Route("/meters/{idOrSlug}", get_meter, methods=["GET"]),
    ]


def _positive(request: Request, name: str, default: int) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    if not text.isdigit() or int(text) < 1:
        raise InvalidRequest(f"{name}: must be a positive integer", field=name)
    return int(text)
