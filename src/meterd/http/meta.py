"""GET /, /ping, /health and /config."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from meterd import __version__
from meterd.config.model import SystemConfig
from meterd.config.redact import redacted_config
from meterd.errors import StorageUnavailable
from meterd.http.responses import JSONResponse, error_response
from meterd.storage.base import Store


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
