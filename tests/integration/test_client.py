"""meterd.client against a real meterd over HTTP on 127.0.0.1 (uvicorn in a thread).

A small ASGI gate in front of the app records every request and can fail the next
POSTs with 503, either before meterd sees them (nothing stored) or after it stored
them (the answer is lost), to show that retries plus client-assigned ids count each
event exactly once.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
import uvicorn
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from meterd.client import (
    AsyncMeterdClient,
    BadRequest,
    BatchTooLarge,
    ClientClosed,
    Conflict,
    ConnectionFailed,
    Event,
    FailedBatch,
    IdConflict,
    InvalidEvents,
    MeterdClient,
    NotFound,
    QueueFull,
    RetryPolicy,
    ServerError,
    Unauthorized,
)
from meterd.config.model import EventTypeConfig
from meterd.http.app import create_app
from meterd.settings import ServerSettings
from meterd.storage.sqlite.store import SQLiteStore
from tests.acceptance.server import free_port
from tests.conftest import API_KEY, make_config

FAST = RetryPolicy(retries=8, backoff=0.02, max_backoff=0.5)
PAST = datetime(2025, 1, 15, 10, 0, tzinfo=UTC)


@dataclass
class Gate:
    """ASGI middleware: records requests; fails the next POSTs with 503 when asked."""

    app: ASGIApp
    fail_before: int = 0  # answer 503 without calling meterd
    fail_after: int = 0  # let meterd store the request, then answer 503 instead
    retry_after: str | None = None
    posts: list[tuple[str, int]] = field(default_factory=list)  # path, events in the body
    gets: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def batch_sizes(self) -> list[int]:
        with self.lock:
            return [size for path, size in self.posts if path == "/usagebatch"]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "GET":
            with self.lock:
                self.gets.append(f"{scope['path']}?{scope['query_string'].decode()}")
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        with self.lock:
            size = len(msgspec.json.decode(body)) if scope["path"] == "/usagebatch" else 1
            self.posts.append((scope["path"], size))
            failing = None
            if self.fail_before > 0:
                self.fail_before -= 1
                failing = "before"
            elif self.fail_after > 0:
                self.fail_after -= 1
                failing = "after"

        async def replay() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        async def discard(message: Message) -> None:
            pass

        if failing is not None:
            if failing == "after":
                await self.app(scope, replay, discard)
            headers = {"Retry-After": self.retry_after} if self.retry_after else None
            await JSONResponse({"error": "flaky"}, 503, headers)(scope, replay, send)
            return
        await self.app(scope, replay, send)


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


class Server:
    """meterd (SQLite in `workdir`) behind a Gate, served by uvicorn in a thread."""

    def __init__(self, workdir: Path, **config: object) -> None:
        settings = ServerSettings(api_keys=(API_KEY,), close_interval_s=None, delivery_poll_s=None)
        store = SQLiteStore(str(workdir / "meterd.db"))
        self.gate = Gate(create_app(settings, make_config(**config), store))
        self.port = free_port()
        self._server = uvicorn.Server(
            uvicorn.Config(self.gate, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        wait_until(lambda: self._server.started, timeout=10)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


def wait_until(condition: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start servers (config overrides as keywords); all are stopped afterwards."""
    started = 0
    with ExitStack() as stack:

        def start(**config: object) -> Server:
            nonlocal started
            started += 1
            workdir = tmp_path / f"server{started}"
            workdir.mkdir()
            server = Server(workdir, **config)
            server.start()
            stack.callback(server.stop)
            return server

        yield start


@pytest.fixture
def server(serve: Callable[..., Server]) -> Server:
    return serve(max_batch_size=1000)


@pytest.fixture
def meter(server: Server) -> Iterator[MeterdClient]:
    with MeterdClient(server.url, API_KEY, retries=FAST) as client:
        yield client


@pytest.fixture
async def ameter(server: Server) -> AsyncIterator[AsyncMeterdClient]:
    async with AsyncMeterdClient(server.url, API_KEY, retries=FAST) as client:
        yield client


def stored_ids(meter: MeterdClient, customer_id: str) -> list[str]:
    return [event.id for event in meter.iter_events(customer_id=customer_id)]


# -- track, batching, flush, close ------------------------------------------------------


def test_track_and_flush_store_each_event_once_with_its_id(meter: MeterdClient) -> None:
    ids = [meter.track("api.calls", "c-track", i) for i in range(30)]
    ids.append(
        meter.track(
            "storage.bytes",
            "c-track",
            52_000,
            metadata={"region": "eu"},
            timestamp=PAST,
            id="given-id",
        )
    )
    meter.flush()

    assert meter.pending == 0 and meter.failed == []
    assert len(set(ids)) == 31 and ids[-1] == "given-id"
    assert sorted(stored_ids(meter, "c-track")) == sorted(ids)
    [given] = meter.events(customer_id="c-track", event_type="storage.bytes").items
    assert (given.value, given.metadata, given.timestamp) == (52_000, {"region": "eu"}, PAST)
    assert given.day == "20250115"


def test_a_full_batch_is_sent_at_once_and_the_rest_waits(server: Server) -> None:
    with MeterdClient(server.url, API_KEY, batch_size=10, flush_interval=60) as meter:
        for i in range(25):
            meter.track("api.calls", "c-size", i)
        wait_until(lambda: len(stored_ids(meter, "c-size")) == 20)
        assert server.gate.batch_sizes() == [10, 10]
        # The second batch's answer may still be on its way back to the sender thread.
        wait_until(lambda: meter.pending == 5)
        meter.flush()
        assert server.gate.batch_sizes() == [10, 10, 5]
        assert len(stored_ids(meter, "c-size")) == 25


def test_a_partial_batch_is_sent_once_flush_interval_has_passed(server: Server) -> None:
    with MeterdClient(server.url, API_KEY, batch_size=1000, flush_interval=0.2) as meter:
        started = time.monotonic()
        for i in range(3):
            meter.track("api.calls", "c-time", i)
        wait_until(lambda: meter.pending == 0)
        assert time.monotonic() - started >= 0.2
        assert server.gate.batch_sizes() == [3]


def test_leaving_the_context_or_close_sends_what_is_queued(server: Server) -> None:
    with MeterdClient(server.url, API_KEY, flush_interval=60) as meter:
        for i in range(5):
            meter.track("api.calls", "c-close", i)
        assert server.gate.batch_sizes() == []
    closed = MeterdClient(server.url, API_KEY, flush_interval=60)
    closed.track("api.calls", "c-close", 5)
    closed.close()
    closed.close()  # idempotent
    with pytest.raises(ClientClosed):
        closed.track("api.calls", "c-close", 6)
    with pytest.raises(ClientClosed):
        closed.events()
    with MeterdClient(server.url, API_KEY) as reader:
        assert len(stored_ids(reader, "c-close")) == 6


def test_events_still_queued_at_interpreter_exit_are_sent(server: Server) -> None:
    script = (
        "import sys\n"
        "from meterd.client import MeterdClient\n"
        "meter = MeterdClient(sys.argv[1], sys.argv[2], flush_interval=60)\n"
        "for i in range(7):\n"
        "    meter.track('api.calls', 'c-exit', 1, id=f'exit-{i}')\n"
    )
    subprocess.run([sys.executable, "-c", script, server.url, API_KEY], check=True, timeout=30)
    with MeterdClient(server.url, API_KEY) as meter:
        assert sorted(stored_ids(meter, "c-exit")) == [f"exit-{i}" for i in range(7)]


def test_a_full_queue_raises_queue_full_after_queue_timeout(server: Server) -> None:
    with MeterdClient(
        server.url, API_KEY, batch_size=100, flush_interval=60, max_queue=5, queue_timeout=0.05
    ) as meter:
        for i in range(5):
            meter.track("api.calls", "c-full", i)
        started = time.monotonic()
        with pytest.raises(QueueFull, match="max_queue"):
            meter.track("api.calls", "c-full", 5)
        assert time.monotonic() - started >= 0.05
        meter.flush()
        meter.track("api.calls", "c-full", 6)
        meter.flush()
        assert len(stored_ids(meter, "c-full")) == 6


# -- retries and exactly-once -------------------------------------------------------------


def test_batches_retried_after_503_are_counted_exactly_once(server: Server) -> None:
    server.gate.fail_before = 1  # refused before storing
    server.gate.fail_after = 2  # stored, but the answer is lost
    with MeterdClient(server.url, API_KEY, batch_size=20, retries=FAST) as meter:
        ids = [meter.track("api.calls", "c-retry", 1) for _ in range(50)]
        meter.flush()
        assert meter.failed == []
        assert sorted(stored_ids(meter, "c-retry")) == sorted(ids)
        assert meter.usage("c-retry").events == {"api.calls": 50}
    assert len(server.gate.batch_sizes()) == 3 + 3  # three batches, three failed attempts


def test_a_capture_whose_answer_was_lost_is_stored_once(
    meter: MeterdClient, server: Server
) -> None:
    server.gate.fail_after = 1
    result = meter.capture("api.calls", "c-capture", 2.5)
    assert result.duplicate  # the retry found the copy the first attempt stored
    assert stored_ids(meter, "c-capture") == [result.id]


def test_retry_after_is_honoured_up_to_max_backoff(server: Server) -> None:
    server.gate.retry_after = "1"
    server.gate.fail_before = 1
    patient = RetryPolicy(retries=2, backoff=0.01, max_backoff=2)
    with MeterdClient(server.url, API_KEY, retries=patient) as meter:
        started = time.monotonic()
        assert not meter.capture("api.calls", "c-after", 1).duplicate
        assert time.monotonic() - started >= 1.0
    server.gate.fail_before = 1
    impatient = RetryPolicy(retries=2, backoff=0.01, max_backoff=0.5)
    with MeterdClient(server.url, API_KEY, retries=impatient) as meter:
        with pytest.raises(ServerError, match="503: flaky"):
            meter.capture("api.calls", "c-after", 1)
    assert len(server.gate.posts) == 3


def test_events_tracked_before_the_server_starts_arrive_once(tmp_path: Path) -> None:
    server = Server(tmp_path)
    starter = threading.Timer(0.3, server.start)
    with MeterdClient(server.url, API_KEY, retries=FAST, flush_interval=0.05) as meter:
        starter.start()
        try:
            ids = [meter.track("api.calls", "c-late", i) for i in range(10)]
            meter.flush()
            starter.join()
            assert meter.failed == []
            assert sorted(stored_ids(meter, "c-late")) == sorted(ids)
        finally:
            starter.join()
            server.stop()


def test_an_unreachable_server_raises_connection_failed() -> None:
    with MeterdClient(f"http://127.0.0.1:{free_port()}", API_KEY, retries=0) as meter:
        with pytest.raises(ConnectionFailed, match="cannot reach") as caught:
            meter.capture("api.calls", "c", 1)
    assert caught.value.__cause__ is not None


def test_exhausted_retries_keep_the_batch_and_requeue_sends_it(server: Server) -> None:
    server.gate.fail_before = 1000
    with MeterdClient(server.url, API_KEY, retries=RetryPolicy(1, backoff=0.01)) as meter:
        ids = [meter.track("api.calls", "c-requeue", i) for i in range(5)]
        meter.flush()
        [failed] = meter.failed
        assert isinstance(failed.error, ServerError) and failed.retryable
        assert [event.id for event in failed.events] == ids
        server.gate.fail_before = 0
        assert meter.requeue_failed() == 5
        meter.flush()
        assert meter.failed == []
        assert sorted(stored_ids(meter, "c-requeue")) == sorted(ids)


# -- errors -----------------------------------------------------------------------------


def test_an_invalid_batch_raises_invalid_events_with_per_index_errors(
    meter: MeterdClient,
) -> None:
    future = int(time.time() * 1000) + 3_600_000
    with pytest.raises(InvalidEvents) as caught:
        meter.capture_batch(
            [
                Event(event_type="api.calls", customer_id="c-422", value=1),
                Event(event_type="nope", customer_id="c-422", value=1),
                Event(event_type="api.calls", customer_id="c-422", value=1, timestamp=future),
            ]
        )
    error = caught.value
    assert error.status_code == 422
    assert [(p.index, p.errors) for p in error.validation_errors] == [
        (1, ["eventType: 'nope' is not configured"]),
        (2, ["timestamp: more than 5 minutes in the future"]),
    ]
    assert (error.valid_count, error.invalid_count) == (1, 2)
    assert "[1] eventType: 'nope' is not configured" in str(error)
    assert stored_ids(meter, "c-422") == []


def test_an_id_reused_for_another_event_raises_id_conflict(meter: MeterdClient) -> None:
    first = meter.capture("api.calls", "c-409", 1, id="c-409-a", timestamp=PAST)
    again = meter.capture("api.calls", "c-409", 1, id="c-409-a", timestamp=PAST)
    assert (first.duplicate, again.duplicate) == (False, True)
    with pytest.raises(IdConflict) as caught:
        meter.capture("api.calls", "c-409", 2, id="c-409-a", timestamp=PAST)
    assert caught.value.status_code == 409
    assert caught.value.id == "c-409-a"
    assert "value differs" in str(caught.value)
    with pytest.raises(InvalidEvents) as in_batch:
        meter.capture_batch(
            [
                Event(event_type="api.calls", customer_id="c-409", value=1, id="c-409-b"),
                Event(event_type="api.calls", customer_id="c-409", value=3, id="c-409-a"),
            ]
        )
    [problem] = in_batch.value.validation_errors
    assert (problem.index, problem.field) == (1, "id")
    assert stored_ids(meter, "c-409") == ["c-409-a"]


def test_an_invalid_tracked_event_fails_alone(server: Server) -> None:
    reported: list[FailedBatch] = []
    with MeterdClient(server.url, API_KEY, on_error=reported.append) as meter:
        good = [meter.track("api.calls", "c-bad", i) for i in range(4)]
        bad = meter.track("nope", "c-bad", 1)
        meter.flush()
        assert meter.failed == []  # on_error took it
        [failed] = reported
        assert isinstance(failed.error, InvalidEvents) and not failed.retryable
        assert [event.id for event in failed.events] == [bad]
        assert sorted(stored_ids(meter, "c-bad")) == sorted(good)


def test_track_refuses_bad_arguments_at_once(meter: MeterdClient) -> None:
    with pytest.raises(TypeError, match="value"):
        meter.track("api.calls", "c", True)
    with pytest.raises(ValueError, match="finite"):
        meter.track("api.calls", "c", float("nan"))
    with pytest.raises(ValueError, match="customer_id"):
        meter.track("api.calls", "", 1)
    with pytest.raises(TypeError):
        meter.track("api.calls", "c", 1, metadata={"not json": object()})
    assert meter.pending == 0


def test_batches_over_the_server_limit_are_split_and_batch_size_adapts(
    serve: Callable[..., Server],
) -> None:
    server = serve(max_batch_size=100)
    with MeterdClient(server.url, API_KEY, batch_size=250, flush_interval=60) as meter:
        with pytest.raises(BatchTooLarge) as caught:
            meter.capture_batch([Event(event_type="api.calls", customer_id="c-413", value=1)] * 150)
        assert (caught.value.received, caught.value.max_allowed) == (150, 100)
        ids = [meter.track("api.calls", "c-413", i) for i in range(500)]
        meter.flush()
        assert meter.failed == []
        assert sorted(stored_ids(meter, "c-413")) == sorted(ids)
    assert server.gate.batch_sizes() == [150, 250, 100, 100, 50, 100, 100, 50]


def test_a_wrong_key_raises_unauthorized_and_keeps_tracked_events(server: Server) -> None:
    with MeterdClient(server.url, "mk_wrong", retries=FAST) as meter:
        with pytest.raises(Unauthorized) as caught:
            meter.capture("api.calls", "c", 1)
        assert caught.value.status_code == 401
        with pytest.raises(Unauthorized):
            meter.events()
        meter.track("api.calls", "c", 1)
        meter.flush()
        [failed] = meter.failed
        assert isinstance(failed.error, Unauthorized) and not failed.retryable
        assert meter.health().ok  # public route
    assert len(server.gate.posts) == 2  # 401 is not retried


def test_unknown_resources_raise_not_found(meter: MeterdClient) -> None:
    with pytest.raises(NotFound):
        meter.delivery(999_999)
    with pytest.raises(NotFound):
        meter.aggregation_events("no-such-aggregation")


# -- reading --------------------------------------------------------------------------


def test_iterators_follow_the_cursor_to_the_last_page(meter: MeterdClient, server: Server) -> None:
    ids = [f"page-{i:03d}" for i in range(250)]
    meter.capture_batch(
        [Event(event_type="api.calls", customer_id="c-page", value=1, id=i) for i in ids]
    )
    first = meter.events(customer_id="c-page", limit=100)
    assert len(first) == 100 and first.next_cursor is not None
    second = meter.events(customer_id="c-page", limit=100, cursor=first.next_cursor)
    assert not {e.id for e in first} & {e.id for e in second}

    events = list(meter.iter_events(customer_id="c-page", page_size=100))
    assert sorted(e.id for e in events) == ids
    assert [e.timestamp for e in events] == sorted((e.timestamp for e in events), reverse=True)
    pages = [g for g in server.gate.gets if g.startswith("/events") and "limit=100" in g]
    assert len(pages) == 2 + 3


def test_aggregations_usage_and_deliveries(meter: MeterdClient) -> None:
    customers = ["c-agg-1", "c-agg-2", "c-agg-3"]
    meter.capture_batch(
        [
            Event(event_type="api.calls", customer_id=c, value=v, timestamp=PAST)
            for c in customers
            for v in (1, 2, 3.5)
        ]
    )
    trigger = meter.trigger()
    assert trigger.closed >= 3 * 4  # hourly, daily, weekly, monthly of January 2025

    daily = list(meter.iter_aggregations(period="daily", to=PAST, page_size=1))
    assert sorted(a.customer_id for a in daily) == customers
    assert all(a.status == "closed" and a.events == {"api.calls": 6.5} for a in daily)
    record = daily[0]
    assert record.id == f"{record.customer_id}_daily_20250115"
    assert len(meter.aggregation_events(record.id)) == 3
    assert len(list(meter.iter_aggregation_events(record.id, page_size=2))) == 3

    usage = meter.usage("c-agg-1", period="daily", at=PAST)
    assert (usage.period_key, usage.status, usage.events) == (
        "20250115",
        "closed",
        {"api.calls": 6.5},
    )

    pending = list(meter.iter_deliveries(status="pending", page_size=5))
    assert len(pending) == trigger.closed
    assert len(meter.deliveries(limit=2)) == 2
    one = meter.delivery(pending[0].id)
    assert one.payload is not None and one.payload["type"] == "aggregation.completed"
    assert one.attempt_log == []
    assert meter.redeliver(one.id).status == "pending"


def test_void_amend_get_event_and_revisions(meter: MeterdClient, server: Server) -> None:
    for n, value in enumerate((5, 7, 9)):
        meter.capture("api.calls", "c-fix", value, timestamp=PAST, id=f"fix-{n}")
    meter.trigger()
    voided = meter.void("fix-0", "duplicate")
    assert (voided.id, voided.status, voided.reason) == ("fix-0", "voided", "duplicate")
    assert meter.void("fix-0", "again") == voided
    # The first answer is lost: the retry carries the same Idempotency-Key, so the event
    # is amended once and the retry gets that amendment back.
    server.gate.fail_after = 1
    amended = meter.amend("fix-1", "wrong value", value=70, metadata={"note": "fixed"})
    assert (amended.amends, amended.value, amended.metadata) == ("fix-1", 70, {"note": "fixed"})
    assert amended.duplicate
    with pytest.raises(Conflict):
        meter.amend("fix-1", "again", value=71)
    with pytest.raises(BadRequest, match="reason"):
        meter.void("fix-2", "")
    with pytest.raises(NotFound):
        meter.get_event("nope")
    original = meter.get_event("fix-1")
    assert (original.status, original.amended_by) == ("voided", amended.id)
    assert meter.get_event(amended.id).amends == "fix-1"
    assert meter.get_event("fix-0").voided_by is not None
    listed = {e.id: e.status for e in meter.events(customer_id="c-fix", include_voided=True)}
    assert listed == {"fix-0": "voided", "fix-1": "voided", "fix-2": "active", amended.id: "active"}
    assert {e.id for e in meter.events(customer_id="c-fix")} == {"fix-2", amended.id}

    assert meter.trigger().revised >= 4  # hourly, daily, weekly, monthly
    [daily] = meter.aggregations(customer_id="c-fix", period="daily").items
    assert (daily.revision, daily.events) == (2, {"api.calls": 79})
    history = meter.revisions(daily.id)
    assert [(r.revision, r.events) for r in history] == [
        (1, {"api.calls": 21}),
        (2, {"api.calls": 79}),
    ]


async def test_async_void_and_amend(ameter: AsyncMeterdClient) -> None:
    await ameter.capture("api.calls", "c-afix", 3, timestamp=PAST, id="afix-0")
    await ameter.trigger()
    amended = await ameter.amend("afix-0", "moved", customer_id="c-afix-2", idempotency_key="k")
    again = await ameter.amend("afix-0", "moved", customer_id="c-afix-2", idempotency_key="k")
    assert again.id == amended.id and again.duplicate and not amended.duplicate
    assert (await ameter.void(amended.id, "test")).status == "voided"
    assert (await ameter.get_event(amended.id)).void_reason == "test"
    assert (await ameter.trigger()).revised >= 4
    history = await ameter.revisions("c-afix_daily_20250115")
    assert [(r.revision, r.events) for r in history] == [(1, {"api.calls": 3}), (2, {})]


def test_service_routes(meter: MeterdClient) -> None:
    assert meter.health().ok
    assert meter.info().name == "meterd"
    config = meter.config()
    assert config["maxBatchSize"] == 1000
    assert config["webhooks"][0]["secrets"] == ["********"]


# -- the asyncio client ---------------------------------------------------------------


async def test_async_track_flush_and_close(server: Server) -> None:
    async with AsyncMeterdClient(server.url, API_KEY, batch_size=10, flush_interval=60) as meter:
        ids = [await meter.track("api.calls", "c-async", i) for i in range(25)]
        await meter.flush()
        assert meter.pending == 0 and meter.failed == []
        stored = [e.id async for e in meter.iter_events(customer_id="c-async", page_size=10)]
        assert sorted(stored) == sorted(ids)
        for i in range(3):
            await meter.track("api.calls", "c-async", i)  # left for close()
    assert server.gate.batch_sizes() == [10, 10, 5, 3]
    with pytest.raises(ClientClosed):
        await meter.track("api.calls", "c-async", 1)


async def test_async_batch_by_time(server: Server) -> None:
    async with AsyncMeterdClient(server.url, API_KEY, flush_interval=0.1) as meter:
        await meter.track("api.calls", "c-async-time", 1)
        deadline = time.monotonic() + 5
        while meter.pending and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert meter.pending == 0
    assert server.gate.batch_sizes() == [1]


async def test_async_retries_count_exactly_once(server: Server) -> None:
    server.gate.fail_before, server.gate.fail_after = 1, 2
    async with AsyncMeterdClient(server.url, API_KEY, batch_size=20, retries=FAST) as meter:
        ids = [await meter.track("api.calls", "c-async-retry", 1) for _ in range(40)]
        await meter.flush()
        captured = await meter.capture("api.calls", "c-async-retry", 1)
        stored = [e.id async for e in meter.iter_events(customer_id="c-async-retry")]
        assert sorted(stored) == sorted([*ids, captured.id])
        assert (await meter.usage("c-async-retry")).events == {"api.calls": 41}


async def test_async_errors(ameter: AsyncMeterdClient, server: Server) -> None:
    with pytest.raises(InvalidEvents) as caught:
        await ameter.capture_batch([Event(event_type="nope", customer_id="c", value=1)])
    assert [p.index for p in caught.value.validation_errors] == [0]
    await ameter.track("api.calls", "c-async-bad", 1)
    await ameter.track("nope", "c-async-bad", 1)
    await ameter.flush()
    [failed] = ameter.failed
    assert isinstance(failed.error, InvalidEvents) and len(failed.events) == 1
    with pytest.raises(NotFound):
        await ameter.delivery(12345)
    async with AsyncMeterdClient(server.url, "mk_wrong") as wrong:
        with pytest.raises(Unauthorized):
            await wrong.trigger()
        assert (await wrong.health()).ok


async def test_async_reading(ameter: AsyncMeterdClient) -> None:
    await ameter.capture_batch(
        [Event(event_type="api.calls", customer_id="c-async-read", value=2, timestamp=PAST)] * 3
    )
    assert (await ameter.trigger()).closed >= 4
    records = [a async for a in ameter.iter_aggregations(customer_id="c-async-read", page_size=1)]
    assert sorted(a.period for a in records) == ["daily", "hourly", "monthly", "weekly"]
    assert (await ameter.usage("c-async-read", "monthly", PAST)).events == {"api.calls": 6}
    deliveries = [d async for d in ameter.iter_deliveries(page_size=3)]
    assert len(deliveries) == len(records)
    assert (await ameter.redeliver(deliveries[0].id)).id == deliveries[0].id
    assert (await ameter.info()).name == "meterd"


# -- meters v2: groups and the usage query -------------------------------------------


async def test_clients_read_groups_and_query_usage(serve: Callable[..., Server]) -> None:
    server = serve(events={"llm.tokens": EventTypeConfig("sum", group_by=("model",))})
    events = [
        Event(
            event_type="llm.tokens",
            customer_id="c1",
            value=value,
            metadata={"model": model},
            timestamp=PAST,
        )
        for value, model in ((10, "a"), (5, "b"), (1, "a"))
    ]
    with MeterdClient(server.url, API_KEY, retries=FAST) as client:
        client.capture_batch(events)
        usage = client.usage("c1", period="daily", at=PAST)
        assert usage.events == {"llm.tokens": 16}
        assert [(g.dimensions, g.value, g.count) for g in usage.groups["llm.tokens"]] == [
            ({"model": "a"}, 11, 2),
            ({"model": "b"}, 5, 1),
        ]
        result = client.usage_query(
            "llm.tokens",
            from_=datetime(2025, 1, 15, tzinfo=UTC),
            to=datetime(2025, 1, 16, tzinfo=UTC),
            group_by=["customerId", "model"],
            filters={"model": "b"},
        )
        assert [(r.customer_id, r.group_by, r.value, r.count) for r in result.data] == [
            ("c1", {"model": "b"}, 5, 1)
        ]
    async with AsyncMeterdClient(server.url, API_KEY, retries=FAST) as aclient:
        result = await aclient.usage_query(
            "llm.tokens",
            from_=datetime(2025, 1, 15, tzinfo=UTC),
            to=datetime(2025, 1, 17, tzinfo=UTC),
            window_size="day",
        )
        assert [(r.window_start, r.value) for r in result.data] == [
            (datetime(2025, 1, 15, tzinfo=UTC), 16)
        ]
