"""GET /metrics, and the middleware that counts what the ingest routes did."""

from __future__ import annotations

import time

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from meterd.metrics import CONTENT_TYPE, Metrics
from meterd.storage.base import Store
from meterd.timeutil import now_ms

METRICS_PATH = "/metrics"


def metrics_routes(metrics: Metrics, store: Store) -> list[Route]:
    async def get_metrics(request: Request) -> Response:
        return Response(await metrics.render(store, now_ms()), media_type=CONTENT_TYPE)

    return [Route(METRICS_PATH, get_metrics, methods=["GET"])]


class _Answer(msgspec.Struct):
    """The fields of an ingest route's 201 answer that tell stored from duplicate."""

    duplicate: bool | None = None
    stored: int | None = None
    duplicates: int | None = None


_decode_answer = msgspec.json.Decoder(_Answer).decode


class IngestMetrics:
    """Counts ingest answers (stored, duplicate, refused) and their latency, by route.

    It sits outside authentication, so a refused key counts as a refused request too.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = _ingest_route(scope)
        if route is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0
        chunks: list[bytes] = []

        async def observe(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and status == 201:
                chunks.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            self.metrics.ingest_latency.labels(route).observe(time.perf_counter() - started)
            self._count(route, status, b"".join(chunks))

    def _count(self, route: str, status: int, body: bytes) -> None:
        if status != 201:
            if status:
                self.metrics.ingest_refused.labels(route, str(status)).inc()
            return
        try:
            answer = _decode_answer(body)
        except msgspec.DecodeError:
            return
        if answer.duplicate is not None:
            stored, duplicates = (0, 1) if answer.duplicate else (1, 0)
        else:
            stored, duplicates = answer.stored or 0, answer.duplicates or 0
        self.metrics.events_stored.labels(route).inc(stored)
        self.metrics.events_duplicate.labels(route).inc(duplicates)


def _ingest_route(scope: Scope) -> str | None:
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    path: str = scope["path"]
    if path == "/usagebatch":
        return "/usagebatch"
    if path.startswith("/usage/"):
        return "/usage/{eventType}"
    return None
