"""Background senders: a thread (sync client) or a task (asyncio client).

Both drive the same `EventBuffer` and `DeliveryPlan`: take a ready batch,
send it, feed each error back to the plan, report what failed, then mark the
batch settled so `flush()` can return.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
import time
from collections.abc import Awaitable, Callable

from meterd.client.batching import DeliveryPlan, EventBuffer, FailedBatch
from meterd.client.errors import BatchTooLarge, ClientClosed, FlushTimeout, MeterdError, QueueFull

log = logging.getLogger("meterd.client")

# How long the interpreter-exit hook waits for the queue to drain.
EXIT_FLUSH_TIMEOUT = 30.0


def _queue_full(buffer: EventBuffer) -> QueueFull:
    return QueueFull(
        f"{len(buffer)} events (max_queue) are waiting to be sent; the event was not queued"
    )


def _not_flushed(buffer: EventBuffer, timeout: float | None) -> FlushTimeout:
    return FlushTimeout(f"{buffer.unsettled} events were still unsent after {timeout} s")


def _unexpected(error: Exception) -> MeterdError:
    # A bug must neither kill the sender nor lose the batch: keep it as failed.
    log.exception("unexpected error while sending a batch")
    wrapped = MeterdError(f"unexpected error while sending: {error!r}")
    wrapped.__cause__ = error
    return wrapped


class _Batcher:
    """What both senders share: the buffer, the options and the plan's side effects."""

    def __init__(
        self,
        *,
        batch_size: int,
        flush_interval: float,
        max_queue: int,
        queue_timeout: float | None,
        on_failed: Callable[[FailedBatch], None],
    ) -> None:
        self.buffer = EventBuffer(
            batch_size=batch_size, flush_interval=flush_interval, max_queue=max_queue
        )
        self.queue_timeout = queue_timeout
        self.closed = False
        self._on_failed = on_failed

    def learn_batch_limit(self, error: MeterdError) -> None:
        """Adopt the server's maxBatchSize when it is below ours, so later batches fit."""
        if isinstance(error, BatchTooLarge) and error.max_allowed:
            if error.max_allowed < self.buffer.batch_size:
                log.warning(
                    "the server accepts at most %d events per batch; batch_size lowered from %d",
                    error.max_allowed,
                    self.buffer.batch_size,
                )
                self.buffer.batch_size = error.max_allowed

    def report(self, failed: list[FailedBatch]) -> None:
        for item in failed:
            log.warning("%d events not sent: %s", len(item.encoded), item.error.message)
            try:
                self._on_failed(item)
            except Exception:
                log.exception("the failed-batch handler raised")


class ThreadBatcher(_Batcher):
    """Sends batches from a daemon thread, started by the first event.

    While the thread runs, an `atexit` hook drains the queue at interpreter
    exit (for at most EXIT_FLUSH_TIMEOUT seconds).
    """

    def __init__(
        self,
        send: Callable[[list[bytes]], object],
        *,
        batch_size: int,
        flush_interval: float,
        max_queue: int,
        queue_timeout: float | None,
        on_failed: Callable[[FailedBatch], None],
    ) -> None:
        super().__init__(
            batch_size=batch_size,
            flush_interval=flush_interval,
            max_queue=max_queue,
            queue_timeout=queue_timeout,
            on_failed=on_failed,
        )
        self._send = send
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    @property
    def pending(self) -> int:
        with self._cond:
            return self.buffer.unsettled

    def add(self, encoded: list[bytes], *, wait: bool = True) -> None:
        """Queue events; when the queue is full, wait up to `queue_timeout`, then QueueFull."""
        with self._cond:
            if self.closed:
                raise ClientClosed()
            if wait and self.buffer.full:
                # Only the sender makes room: from its thread (on_error), waiting cannot help.
                timeout = 0 if threading.current_thread() is self._thread else self.queue_timeout
                self._cond.wait_for(lambda: self.closed or not self.buffer.full, timeout)
                if self.closed:
                    raise ClientClosed()
                if self.buffer.full:
                    raise _queue_full(self.buffer)
            now = time.monotonic()
            for raw in encoded:
                self.buffer.add(raw, now)
            self._start()
            if len(self.buffer) <= len(encoded) or len(self.buffer) >= self.buffer.batch_size:
                self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> None:
        """Send everything queued before this call and wait until it is sent or failed."""
        self._refuse_from_sender("flush()")
        with self._cond:
            target = self.buffer.request_flush()
            self._cond.notify_all()
            if not self._cond.wait_for(lambda: self.buffer.settled >= target, timeout):
                raise _not_flushed(self.buffer, timeout)

    def close(self, timeout: float | None = None) -> None:
        """Refuse new events, send the queued ones, stop the thread. Idempotent."""
        self._refuse_from_sender("close()")
        with self._cond:
            self.closed = True
            thread = self._thread
            self._cond.notify_all()
        if thread is None:
            return
        thread.join(timeout)
        if thread.is_alive():
            raise _not_flushed(self.buffer, timeout)
        atexit.unregister(self._close_at_exit)

    def _refuse_from_sender(self, what: str) -> None:
        if self._thread is not None and threading.current_thread() is self._thread:
            raise RuntimeError(f"{what} cannot be called from the on_error handler")

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="meterd-client-batcher", daemon=True
            )
            self._thread.start()
            atexit.register(self._close_at_exit)

    def _close_at_exit(self) -> None:
        try:
            self.close(EXIT_FLUSH_TIMEOUT)
        except FlushTimeout:
            log.error(
                "%d events were not sent before the interpreter exited",
                self.buffer.unsettled,
            )

    def _run(self) -> None:
        while True:
            with self._cond:
                while (batch := self.buffer.take(time.monotonic(), draining=self.closed)) is None:
                    if self.closed:
                        return
                    self._cond.wait(self.buffer.wait_time(time.monotonic()))
                self._cond.notify_all()  # room for add() calls waiting on a full queue
            self.report(self._deliver(batch))
            with self._cond:
                self.buffer.settle(len(batch))
                self._cond.notify_all()

    def _deliver(self, batch: list[bytes]) -> list[FailedBatch]:
        plan = DeliveryPlan(batch)
        while (chunk := plan.next_chunk()) is not None:
            error: MeterdError | None = None
            try:
                self._send(chunk)
            except MeterdError as caught:
                error = caught
                with self._cond:
                    self.learn_batch_limit(caught)
            except Exception as caught:
                error = _unexpected(caught)
            plan.outcome(error)
        return plan.failed


class TaskBatcher(_Batcher):
    """Sends batches from an asyncio task, started by the first event in the running loop."""

    def __init__(
        self,
        send: Callable[[list[bytes]], Awaitable[object]],
        *,
        batch_size: int,
        flush_interval: float,
        max_queue: int,
        queue_timeout: float | None,
        on_failed: Callable[[FailedBatch], None],
    ) -> None:
        super().__init__(
            batch_size=batch_size,
            flush_interval=flush_interval,
            max_queue=max_queue,
            queue_timeout=queue_timeout,
            on_failed=on_failed,
        )
        self._send = send
        self._cond = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        return self.buffer.unsettled

    async def add(self, encoded: list[bytes], *, wait: bool = True) -> None:
        """Queue events; when the queue is full, wait up to `queue_timeout`, then QueueFull."""
        async with self._cond:
            if self.closed:
                raise ClientClosed()
            if wait and self.buffer.full:
                try:
                    await asyncio.wait_for(
                        self._cond.wait_for(lambda: self.closed or not self.buffer.full),
                        self.queue_timeout,
                    )
                except TimeoutError:
                    raise _queue_full(self.buffer) from None
                if self.closed:
                    raise ClientClosed()
            now = time.monotonic()
            for raw in encoded:
                self.buffer.add(raw, now)
            self._start()
            if len(self.buffer) <= len(encoded) or len(self.buffer) >= self.buffer.batch_size:
                self._cond.notify_all()

    async def flush(self, timeout: float | None = None) -> None:
        """Send everything queued before this call and wait until it is sent or failed."""
        async with self._cond:
            target = self.buffer.request_flush()
            self._cond.notify_all()
            try:
                await asyncio.wait_for(
                    self._cond.wait_for(lambda: self.buffer.settled >= target), timeout
                )
            except TimeoutError:
                raise _not_flushed(self.buffer, timeout) from None

    async def close(self, timeout: float | None = None) -> None:
        """Refuse new events, send the queued ones, stop the task. Idempotent."""
        async with self._cond:
            self.closed = True
            self._cond.notify_all()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except TimeoutError:
            raise _not_flushed(self.buffer, timeout) from None

    def _start(self) -> None:
        if self._task is None:
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._run(), name="meterd-client-batcher")

    async def _run(self) -> None:
        while True:
            async with self._cond:
                while (batch := self.buffer.take(time.monotonic(), draining=self.closed)) is None:
                    if self.closed:
                        return
                    try:
                        await asyncio.wait_for(
                            self._cond.wait(), self.buffer.wait_time(time.monotonic())
                        )
                    except TimeoutError:
                        pass
                self._cond.notify_all()
            self.report(await self._deliver(batch))
            async with self._cond:
                self.buffer.settle(len(batch))
                self._cond.notify_all()

    async def _deliver(self, batch: list[bytes]) -> list[FailedBatch]:
        plan = DeliveryPlan(batch)
        while (chunk := plan.next_chunk()) is not None:
            error: MeterdError | None = None
            try:
                await self._send(chunk)
            except MeterdError as caught:
                error = caught
                self.learn_batch_limit(caught)
            except Exception as caught:
                error = _unexpected(caught)
            plan.outcome(error)
        return plan.failed
