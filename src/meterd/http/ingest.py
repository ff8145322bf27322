"""POST /usage/{eventType} and POST /usagebatch, on bare ASGI.

Ingest is meterd's hot path. At ten thousand requests a second, Starlette's
routing, Request objects and exception middleware cost more than the work
itself, so these two routes are an ASGI middleware that answers them directly
and passes every other request on. API keys are checked before (auth.py);
MeterdError answers come from the one error mapping in responses.py.
"""

from __future__ import annotations

import msgspec
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from meterd.config.model import SystemConfig
from meterd.errors import IdConflict, InvalidRequest, MeterdError
from meterd.http.body import read_body
from meterd.http.responses import error_response, meterd_error_response, shown_path
from meterd.ingest import conflict_failure, parse_batch, parse_usage
from meterd.settings import ServerSettings
from meterd.storage.base import Store
from meterd.timeutil import now_ms

USAGE_PREFIX = "/usage/"
BATCH_PATH = "/usagebatch"
QUERY_PATH = "/usage/query"  # GET: the usage query; POST still ingests an event type "query"


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


_encode = msgspec.json.Encoder().encode


class IngestRoutes:
    """Answers the two ingest routes; every other request goes on to `app`."""

    def __init__(
        self, app: ASGIApp, settings: ServerSettings, config: SystemConfig, store: Store
    ) -> None:
        self.app = app
        self._store = store
        self._known_types = frozenset(config.events)
        self._max_batch_size = config.max_batch_size
        self._unknown_fields = config.unknown_fields
        self._max_event_age_ms = config.max_event_age_ms
        self._max_body_bytes = settings.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        event_type = path[len(USAGE_PREFIX) :] if path.startswith(USAGE_PREFIX) else None
        reads = path == QUERY_PATH and scope["method"] in ("GET", "HEAD")
        if reads or (path != BATCH_PATH and (not event_type or "/" in event_type)):
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":
            refusal = error_response(
                405, "Method Not Allowed", {"Allow": "POST"}, path=shown_path(path)
            )
            await refusal(scope, receive, send)
            return
        try:
            if event_type is None:
                body = await self._capture_batch(scope, receive)
            else:
                body = await self._capture_usage(scope, receive, event_type)
        except MeterdError as error:
            await meterd_error_response(error)(scope, receive, send)
            return
        except ClientDisconnect:
            return
        await send(_created_start(len(body)))
        await send({"type": "http.response.body", "body": body})

    async def _capture_usage(self, scope: Scope, receive: Receive, event_type: str) -> bytes:
        length, idempotency = _ingest_headers(scope)
        key = _idempotency_key(idempotency)
        event = parse_usage(
            await read_body(receive, length, self._max_body_bytes),
            event_type=event_type,
            idempotency_key=key,
            known_types=self._known_types,
            received_ms=now_ms(),
            unknown_fields=self._unknown_fields,
            max_event_age_ms=self._max_event_age_ms,
        )
        try:
            [stored] = await self._store.ingest([event])
        except IdConflict as conflict:
            if event.id == key:
                conflict.details["field"] = "Idempotency-Key"
            raise
        return _encode(
            UsageCaptured(
                "Event captured", event.event_type, event.customer_id, event.id, not stored
            )
        )

    async def _capture_batch(self, scope: Scope, receive: Receive) -> bytes:
        length, _ = _ingest_headers(scope)
        events = parse_batch(
            await read_body(receive, length, self._max_body_bytes),
            known_types=self._known_types,
            max_batch_size=self._max_batch_size,
            received_ms=now_ms(),
            unknown_fields=self._unknown_fields,
            max_event_age_ms=self._max_event_age_ms,
        )
        try:
            stored = sum(await self._store.ingest(events))
        except IdConflict as conflict:
            raise conflict_failure(conflict, len(events)) from None
        return _encode(BatchCaptured("Events captured", len(events), stored, len(events) - stored))


def _ingest_headers(scope: Scope) -> tuple[bytes | None, bytes | None]:
    """Content-Length and Idempotency-Key, the two headers ingest reads, in one pass.

    ASGI servers send lower-case names; the first of a repeated header wins.
    """
    length = idempotency = None
    for name, value in scope["headers"]:
        if name == b"content-length":
            if length is None:
                length = value
        elif name == b"idempotency-key" and idempotency is None:
            idempotency = value
    return length, idempotency


def _idempotency_key(value: bytes | None) -> str | None:
    if value is None:
        return None
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise InvalidRequest(
            "Idempotency-Key: must be UTF-8 text", field="Idempotency-Key"
        ) from None


def _created_start(length: int) -> Message:
    return {
        "type": "http.response.start",
        "status": 201,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(length).encode()),
        ],
    }
