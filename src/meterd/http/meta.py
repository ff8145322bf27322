"""GET /, /ping, /health and /config."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from meterd import __version__
from meterd.config.model import SystemConfig
from meterd.durations import format_duration
from meterd.errors import StorageUnavailable
from meterd.http.responses import JSONResponse, error_response
from meterd.storage.base import Store
from meterd.timeutil import format_ms

REDACTED = "********"


def redacted_config(config: SystemConfig) -> dict[str, Any]:
    """The loaded config in its file format, with every webhook secret hidden."""
    return {
        "periods": [
            period.name
            if period.is_calendar
            else {
                "name": period.name,
                "every": format_duration(period.every_ms or 0),
                "anchor": format_ms(period.anchor_ms or 0),
            }
            for period in config.periods
        ],
        "events": {name: {"op": event.op} for name, event in config.events.items()},
        "webhooks": [
            {
                "url": hook.url,
                "enabled": hook.enabled,
                "secrets": [REDACTED for _ in hook.secrets],
                "periods": list(hook.periods) if hook.periods is not None else None,
                "retrySchedule": [format_duration(ms) for ms in hook.retry_schedule_ms],
            }
            for hook in config.webhooks
        ],
        "timezone": config.timezone,
        "gracePeriod": format_duration(config.grace_period_ms),
        "maxBatchSize": config.max_batch_size,
        "unknownFields": config.unknown_fields,
        "source": config.source,
    }


def meta_routes(config: SystemConfig, store: Store) -> list[Route]:
    async def service_info(request: Request) -> Response:
        return JSONResponse(
            {
                "name": "meterd",
                "version": __version__,
                "description": "Usage metering: events in; period totals and signed webhooks out.",
                "docs": "/docs",
                "openapi": "/openapi.json",
            }
        )

    async def ping(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def health(request: Request) -> Response:
        try:
            await store.ping()
        except StorageUnavailable as error:
            return error_response(503, error.message, status="unavailable", database="down")
        return JSONResponse({"status": "ok", "database": "ok"})

    async def get_config(request: Request) -> Response:
        return JSONResponse(redacted_config(config))

    return [
        Route("/", service_info, methods=["GET"]),
        Route("/ping", ping, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/config", get_config, methods=["GET"]),
    ]
