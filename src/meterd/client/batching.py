"""The background batcher's logic, free of threads and tasks.

`EventBuffer` decides what to send and when; `DeliveryPlan` decides what to do
when a batch is refused. The sync client drives them from a thread, the asyncio
client from a task.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import msgspec

from meterd.client.errors import (
    TRANSIENT_ERRORS,
    BatchTooLarge,
    InvalidEvents,
    MeterdError,
    PayloadTooLarge,
)
from meterd.client.models import Event

_event_decoder = msgspec.json.Decoder(Event)


@dataclass(repr=False)
class FailedBatch:
    """Events the background batcher could not send, and why.

    They keep their ids, so sending them again (`requeue_failed()` or
    `capture_batch`) cannot count them twice.
    """

    encoded: list[bytes]
    error: MeterdError

    @property
    def events(self) -> list[Event]:
        return [_event_decoder.decode(raw) for raw in self.encoded]

    @property
    def retryable(self) -> bool:
        """True when the server was unreachable or failing: the same events may succeed later."""
        return isinstance(self.error, TRANSIENT_ERRORS)

    def __repr__(self) -> str:
        return f"FailedBatch(<{len(self.encoded)} events>, error={self.error!r})"


class EventBuffer:
    """Encoded events waiting to be sent, in order, with the counts `flush()` waits on.

    A batch is ready when `batch_size` events wait, when the oldest has waited
    `flush_interval` seconds, when a flush asked for the events it holds, or
    when draining (closing). Not thread-safe: the caller serialises access.
    """

    def __init__(self, *, batch_size: int, flush_interval: float, max_queue: int) -> None:
        if batch_size < 1 or max_queue < 1:
            raise ValueError("batch_size and max_queue must be at least 1")
        if flush_interval <= 0:
            raise ValueError("flush_interval must be positive")
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_queue = max_queue
        self._items: deque[tuple[float, bytes]] = deque()
        self.enqueued = 0  # events ever added
        self.settled = 0  # events sent, or given up on (and kept as failed)
        self._taken = 0  # events handed to the sender
        self._flush_upto = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def full(self) -> bool:
        return len(self._items) >= self.max_queue

    @property
    def unsettled(self) -> int:
        """Events queued or being sent."""
        return self.enqueued - self.settled

    def add(self, encoded: bytes, now: float) -> None:
        self._items.append((now, encoded))
        self.enqueued += 1

    def request_flush(self) -> int:
        """Ask for everything queued so far to be sent; done when `settled` reaches the result."""
        self._flush_upto = self.enqueued
        return self.enqueued

    def take(self, now: float, *, draining: bool = False) -> list[bytes] | None:
        """The next batch if one is ready, else None."""
        if not self._items:
            return None
        ready = (
            draining
            or len(self._items) >= self.batch_size
            or self._taken < self._flush_upto
            or now - self._items[0][0] >= self.flush_interval
        )
        if not ready:
            return None
        count = min(self.batch_size, len(self._items))
        batch = [self._items.popleft()[1] for _ in range(count)]
        self._taken += count
        return batch

    def wait_time(self, now: float) -> float | None:
        """Seconds until the oldest event is due; None when there is none."""
        if not self._items:
            return None
        return max(0.0, self._items[0][0] + self.flush_interval - now)

    def settle(self, count: int) -> None:
        self.settled += count


class DeliveryPlan:
    """What to POST for one batch, step by step, given how each step went.

    - 413: split the refused batch (into the server's `maxAllowed`, else halves);
    - 422: the server stored nothing, so send the valid events again and keep the
      invalid ones as failed: one bad event does not lose its whole batch;
    - any other error (after the sender's retries): keep the sub-batch as failed.

    Every step shrinks what is left to send, so a plan always ends.
    """

    def __init__(self, batch: list[bytes]) -> None:
        self._todo = deque([batch])
        self._current: list[bytes] = []
        self.failed: list[FailedBatch] = []

    def next_chunk(self) -> list[bytes] | None:
        """The next sub-batch to send, or None when the plan is done."""
        self._current = self._todo.popleft() if self._todo else []
        return self._current or None

    def outcome(self, error: MeterdError | None) -> None:
        """How sending the last sub-batch went: None for success."""
        chunk = self._current
        if error is None:
            return
        if isinstance(error, PayloadTooLarge) and len(chunk) > 1:
            size = (len(chunk) + 1) // 2
            if isinstance(error, BatchTooLarge) and error.max_allowed:
                size = max(1, min(size, error.max_allowed))
            parts = [chunk[i : i + size] for i in range(0, len(chunk), size)]
            self._todo.extendleft(reversed(parts))
            return
        if isinstance(error, InvalidEvents):
            bad = {problem.index for problem in error.validation_errors}
            invalid = [raw for i, raw in enumerate(chunk) if i in bad]
            valid = [raw for i, raw in enumerate(chunk) if i not in bad]
            if invalid:
                self.failed.append(FailedBatch(invalid, error))
                if valid:
                    self._todo.appendleft(valid)
                return
        self.failed.append(FailedBatch(chunk, error))
