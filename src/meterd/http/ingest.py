"""POST /usage/{eventType} and POST /usagebatch."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from meterd.config.model import SystemConfig
from meterd.http.body import read_body
from meterd.http.responses import JSONResponse
from meterd.ingest import parse_batch, parse_usage
from meterd.settings import ServerSettings
from meterd.storage.base import Store
from meterd.timeutil import now_ms


class UsageCaptured(msgspec.Struct, rename="camel"):
    message: str
    event_type: str
    customer_id: str
    id: str
    duplicate: bool


class BatchCaptured(msgspec.Struct):
    message: str
    count: int
    stored: int
    duplicates: int


def ingest_routes(settings: ServerSettings, config: SystemConfig, store: Store) -> list[Route]:
    known_types = frozenset(config.events)

    async def capture_usage(request: Request) -> Response:
        event = parse_usage(
            await read_body(request, settings.max_body_bytes),
            event_type=request.path_params["eventType"],
            idempotency_key=request.headers.get("idempotency-key"),
            known_types=known_types,
            received_ms=now_ms(),
        )
        [stored] = await store.ingest([event])
        return JSONResponse(
            UsageCaptured(
                "Event captured", event.event_type, event.customer_id, event.id, not stored
            ),
            status_code=201,
        )

    async def capture_batch(request: Request) -> Response:
        events = parse_batch(
            await read_body(request, settings.max_body_bytes),
            known_types=known_types,
            max_batch_size=config.max_batch_size,
            received_ms=now_ms(),
        )
        stored = sum(await store.ingest(events))
        return JSONResponse(
            BatchCaptured("Events captured", len(events), stored, len(events) - stored),
            status_code=201,
        )

    return [
        Route("/usage/{eventType}", capture_usage, methods=["POST"]),
        Route("/usagebatch", capture_batch, methods=["POST"]),
    ]
