"""POST /api/v1/events: CloudEvents in, through the same ingest path as /usagebatch.

The events are validated as a whole and handed to `Store.ingest`, so they share the
native routes' group commit and durability: the 204 is sent after the commit.
"""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from meterd.config.model import SystemConfig
from meterd.http.body import read_body
from meterd.openmeter.cloudevents import MeterReaders, media_shape, parse_cloudevents
from meterd.storage.base import Store
from meterd.timeutil import now_ms


def events_routes(config: SystemConfig, store: Store, *, max_body_bytes: int) -> list[Route]:
    meters = MeterReaders(config.events)

    async def ingest_events(request: Request) -> Response:
        shape = media_shape(request.headers.get("content-type"))
        declared = request.headers.get("content-length")
        try:
            body = await read_body(
                request.receive, None if declared is None else declared.encode(), max_body_bytes
            )
        except ClientDisconnect:
            return Response(status_code=400)  # nobody is left to read it; nothing stored
        events = parse_cloudevents(
            body,
            shape=shape,
            meters=meters,
            max_batch_size=config.max_batch_size,
            received_ms=now_ms(),
            max_event_age_ms=config.max_event_age_ms,
        )
        await store.ingest(events)
        return Response(status_code=204)

    return [Route("/events", ingest_events, methods=["POST"])]
