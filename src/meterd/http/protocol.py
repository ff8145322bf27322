"""uvicorn's HTTP protocol with limits on slow and idle clients.

uvicorn closes a keep-alive connection that stays idle between requests, but it
waits forever for a request's headers and body: a client that connects and sends
nothing, or one byte a second, holds a connection (and memory) for as long as it
likes. This protocol gives every request one deadline to arrive whole, headers and
body, counted from the connection (first request) or its first byte (later ones), and
refuses connections beyond a maximum.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("meterd.http")

_TIMED_OUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"connection: close\r\ncontent-length: 55\r\n\r\n"
    b'{"error":"the request did not arrive in time; closing"}'
)
_TOO_MANY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"connection: close\r\nretry-after: 1\r\ncontent-length: 37\r\n\r\n"
    b'{"error":"too many open connections"}'
)


class GuardedProtocol(HttpToolsProtocol):
    """HttpToolsProtocol with a whole-request read deadline and a connection cap."""

    request_timeout_s: ClassVar[float] = 30.0
    max_connections: ClassVar[int] = 1000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            log.warning("refused a connection: %d are open", len(self.connections) - 1)
            transport.write(_TOO_MANY)
            transport.close()
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._read_deadline is None:
            self._arm()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def _arm(self) -> None:
        self._read_deadline = self.loop.call_later(self.request_timeout_s, self._timed_out)

    def _disarm(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _timed_out(self) -> None:
        self._read_deadline = None
        if self.transport.is_closing():
            return
        # Before the app answered, the client may still read why; after, just close.
        if self.cycle is None or not self.cycle.response_started:
            self.transport.write(_TIMED_OUT)
        self.transport.close()


def guarded_protocol(*, request_timeout_s: float, max_connections: int) -> type[GuardedProtocol]:
    """A protocol class with these limits, for `uvicorn.run(http=...)` in this process."""
    return type(
        "MeterdHttpProtocol",
        (GuardedProtocol,),
        {"request_timeout_s": request_timeout_s, "max_connections": max_connections},
    )


class WorkerProtocol(GuardedProtocol):
    """The protocol of `meterd serve --workers N` processes, which uvicorn imports by name.

    Each worker sets its limits with `limit_worker_protocol` when it builds its app.
    """


def limit_worker_protocol(*, request_timeout_s: float, max_connections: int) -> None:
    WorkerProtocol.request_timeout_s = request_timeout_s
    WorkerProtocol.max_connections = max_connections
