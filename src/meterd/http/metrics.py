"""GET /metrics, and the middleware that counts what the ingest routes did."""

from __future__ import annotations

import time

import msgspec
from prometheus_client import Counter, Histogram
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
        # Each route's series, looked up once: `labels()` costs more than the count itself.
        self._series = {route: _RouteSeries(metrics, route) for route in INGEST_ROUTES}

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

        series = self._series[route]
        try:
            await self.app(scope, receive, observe)
        finally:
            series.observe(time.perf_counter() - started)
            self._count(series, status, chunks)

    def _count(self, series: _RouteSeries, status: int, chunks: list[bytes]) -> None:
        if status != 201:
            if status:
                self.metrics.ingest_refused.labels(series.route, str(status)).inc()
            return
        try:
            answer = _decode_answer(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        except msgspec.DecodeError:
            return
        if answer.duplicate is not None:
            duplicate = int(answer.duplicate)
            series.captured(1 - duplicate, duplicate)
        else:
            series.captured(answer.stored or 0, answer.duplicates or 0)


SINGLE_ROUTE = "/usage/{eventType}"
BATCH_ROUTE = "/usagebatch"
INGEST_ROUTES = (SINGLE_ROUTE, BATCH_ROUTE)


class _RouteSeries:
    """One ingest route's latency histogram and stored/duplicate counters, bound once.

    Each series appears in /metrics when first counted, as `labels()` would make it:
    the latency at the route's first answer, the event counts at its first 201.
    """

    __slots__ = ("_metrics", "route", "_latency", "_stored", "_duplicate")

    def __init__(self, metrics: Metrics, route: str) -> None:
        self._metrics = metrics
        self.route = route
        self._latency: Histogram | None = None
        self._stored: Counter | None = None
        self._duplicate: Counter | None = None

    def observe(self, seconds: float) -> None:
        if self._latency is None:
            self._latency = self._metrics.ingest_latency.labels(self.route)
        self._latency.observe(seconds)

    def captured(self, stored: int, duplicates: int) -> None:
        if self._stored is None or self._duplicate is None:
            self._stored = self._metrics.events_stored.labels(self.route)
            self._duplicate = self._metrics.events_duplicate.labels(self.route)
        if stored:
            self._stored.inc(stored)
        if duplicates:
            self._duplicate.inc(duplicates)


def _ingest_route(scope: Scope) -> str | None:
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    path: str = scope["path"]
    if path == BATCH_ROUTE:
        return BATCH_ROUTE
    if path.startswith("/usage/"):
        return SINGLE_ROUTE
    return None
