"""The delivery worker against hostile receivers: odd Retry-After values, trickled answers,
and faults inside the worker itself. Real receivers on 127.0.0.1, both backends."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from meterd.storage.base import Store
from meterd.timeutil import now_ms
from meterd.webhooks import delivery as delivery_module
from meterd.webhooks import signing
from meterd.webhooks.delivery import ATTEMPT_TIMEOUT_S, DeliveryWorker
from meterd.webhooks.retry import MAX_RETRY_AFTER_MS
from tests.integration.test_webhooks import FAST, close_one_day, hook_config, no_pending, until


@dataclass
class RawReceiver:
    """Answers each request with raw bytes: `head`, then `body`, one byte every `trickle_s`."""

    head: bytes
    body: bytes = b""
    trickle_s: float = 0.0
    requests: int = 0
    in_flight: int = 0
    most_in_flight: int = 0
    finished_at: list[float] = field(default_factory=list)
    handlers: set[asyncio.Task[None]] = field(default_factory=set)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                self.requests += 1
                self.in_flight += 1
                self.most_in_flight = max(self.most_in_flight, self.in_flight)
                # In flight until answered or until the client hangs up, whichever is
                # first; a hang-up is seen at once, not at the next trickled byte.
                hung_up = asyncio.ensure_future(reader.read(1))
                try:
                    writer.write(self.head)
                    if self.trickle_s:
                        for byte in self.body:
                            await writer.drain()
                            await asyncio.wait({hung_up}, timeout=self.trickle_s)
                            if hung_up.done():
                                break
                            writer.write(bytes([byte]))
                    else:
                        writer.write(self.body)
                    await writer.drain()
                finally:
                    if not hung_up.done():
                        # The answer is complete: the client may send its next request.
                        hung_up.cancel()
                    self.in_flight -= 1
                    self.finished_at.append(time.monotonic())
                if hung_up.done() and not hung_up.cancelled():
                    hung_up.exception()  # EOF or a reset: either way, gone
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            yield f"http://127.0.0.1:{port}/hook"
        finally:
            server.close()
            for task in self.handlers:
                task.cancel()
            await asyncio.gather(*self.handlers)


def answer(status: str, headers: bytes = b"", body: bytes = b"") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\n".encode()
        + headers
        + f"content-length: {len(body)}\r\n\r\n".encode()
        + body
    )


@asynccontextmanager
async def running(*workers: DeliveryWorker) -> AsyncIterator[None]:
    for worker in workers:
        worker.start()
    try:
        yield
    finally:
        for worker in workers:
            await worker.stop()


@pytest.mark.parametrize(
    "retry_after",
    ["²".encode(), "٣".encode(), b"\xb2", b"1e3", b"Thu, 99 Foo 2025 25:61:00 GMT"],
)
async def test_unreadable_retry_after_is_recorded_and_fails_on_schedule(
    open_store: Store, retry_after: bytes
) -> None:
    store = open_store
    receiver = RawReceiver(answer("503 Busy", b"retry-after: " + retry_after + b"\r\n", b"busy"))
    async with receiver.running() as url:
        config = hook_config(url)
        await close_one_day(store, config)
        async with running(DeliveryWorker(store, config, poll_interval_s=0.02)):
            await until(lambda: no_pending(store))
    [failed] = await store.list_deliveries(status="failed", limit=10, before_id=None)
    found = await store.get_delivery(failed.id)
    assert found is not None
    _, attempts = found
    # Every attempt recorded; the schedule (three retries) ran out: failed, not stuck.
    assert failed.attempts == len(FAST) + 1 == receiver.requests
    assert [a.status_code for a in attempts] == [503] * (len(FAST) + 1)
    assert [a.response for a in attempts] == ["busy"] * (len(FAST) + 1)


async def test_a_5000_digit_retry_after_is_capped_at_a_day(open_store: Store) -> None:
    store = open_store
    receiver = RawReceiver(answer("429 Slow down", b"retry-after: " + b"9" * 5000 + b"\r\n"))
    async with receiver.running() as url:
        config = hook_config(url)
        await close_one_day(store, config)
        before = now_ms()
        async with running(DeliveryWorker(store, config, poll_interval_s=0.02)):

            async def attempted() -> bool:
                listed = await store.list_deliveries(status=None, limit=1, before_id=None)
                return listed[0].attempts == 1

            await until(attempted)
    [pending] = await store.list_deliveries(status="pending", limit=10, before_id=None)
    assert pending.attempts == 1 and pending.last_error == "HTTP 429"
    assert pending.next_attempt_ms is not None
    assert before + MAX_RETRY_AFTER_MS <= pending.next_attempt_ms <= now_ms() + MAX_RETRY_AFTER_MS


async def test_a_trickling_receiver_is_cut_at_the_attempt_deadline_and_never_sent_twice(
    open_store: Store,
) -> None:
    """Headers at once, then one body byte every 0.25 s: no single read ever waits long,
    yet the attempt as a whole ends at its deadline (1 s here; 15 s in serve). Two
    workers (two processes) share the outbox; the message is never in flight twice."""
    store = open_store
    receiver = RawReceiver(answer("200 OK", body=b"x" * 40)[:-40], b"x" * 40, trickle_s=0.25)
    async with receiver.running() as url:
        config = hook_config(url)
        await close_one_day(store, config)
        workers = [
            DeliveryWorker(store, config, poll_interval_s=0.02, attempt_timeout_s=1.0)
            for _ in range(2)
        ]
        assert all(worker.lease_ms >= 2 * 1000 for worker in workers)
        started = time.monotonic()
        async with running(*workers):

            async def two_attempts() -> bool:
                listed = await store.list_deliveries(status=None, limit=1, before_id=None)
                return listed[0].attempts >= 2

            await until(two_attempts, seconds=15)
        elapsed = time.monotonic() - started
    [delivery] = await store.list_deliveries(status=None, limit=10, before_id=None)
    found = await store.get_delivery(delivery.id)
    assert found is not None
    first = found[1][0]
    assert first.error == "timed out after 1 s"
    assert 900 <= first.latency_ms <= 1600
    assert elapsed < 6  # two attempts of about a second each, 20 ms apart
    assert receiver.most_in_flight == 1


def test_the_attempt_deadline_is_15_s_and_a_claim_outlives_it() -> None:
    assert ATTEMPT_TIMEOUT_S == 15.0
    # From claim to the end of an attempt may take up to two deadlines (waiting for a
    # slot, then the attempt); the lease leaves room beyond that to record it.
    assert delivery_module.LEASE_FACTOR * ATTEMPT_TIMEOUT_S > 2 * ATTEMPT_TIMEOUT_S


async def test_a_fault_inside_an_attempt_is_recorded_and_retried(
    open_store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = open_store
    receiver = RawReceiver(answer("200 OK", body=b"ok"))
    real_sign: Callable[..., dict[str, str]] = signing.signed_headers
    calls = 0

    def sign_failing_once(*args: object) -> dict[str, str]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("signing broke")
        return real_sign(*args)

    monkeypatch.setattr(delivery_module, "signed_headers", sign_failing_once)
    async with receiver.running() as url:
        config = hook_config(url)
        await close_one_day(store, config)
        async with running(DeliveryWorker(store, config, poll_interval_s=0.02)):
            await until(lambda: no_pending(store))
    [delivered] = await store.list_deliveries(status="delivered", limit=10, before_id=None)
    found = await store.get_delivery(delivered.id)
    assert found is not None
    assert [a.error for a in found[1]] == ["internal error: RuntimeError('signing broke')", None]
    assert "failed inside meterd" in caplog.text


async def test_a_worker_that_dies_is_logged_and_restarted(
    open_store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = open_store
    receiver = RawReceiver(answer("200 OK", body=b"ok"))
    release = store.release_claims

    async def release_failing() -> None:
        monkeypatch.setattr(store, "release_claims", release)
        raise ConnectionError("database went away")

    monkeypatch.setattr(store, "release_claims", release_failing)
    monkeypatch.setattr(delivery_module, "RESTART_DELAY_S", 0.05)
    caplog.set_level(logging.ERROR, logger="meterd.webhooks")
    async with receiver.running() as url:
        config = hook_config(url)
        await close_one_day(store, config)
        worker = DeliveryWorker(store, config, poll_interval_s=0.02)
        async with running(worker):
            await until(lambda: no_pending(store))
    assert worker.restarts == 1
    assert "the webhook delivery worker failed; restarting it" in caplog.text
    assert "database went away" in caplog.text
    assert receiver.requests == 1
