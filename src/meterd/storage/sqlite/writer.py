"""The one SQLite writer: a thread that orders every write, with group commit.

Concurrent ingest requests queue up while a transaction commits; the next
transaction takes all of them at once, so the cost of the commit (an fsync)
is shared. Each request is answered only after its transaction committed.
With an ingest process (`ingest_process.py`, what `meterd serve` uses), that
process runs the ingest transactions while this thread waits for each; every
other write runs here. Either way one write runs at a time.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from meterd.errors import IdConflict, Overloaded
from meterd.ingest import NewEvent
from meterd.storage.commitsizes import CommitSizes
from meterd.storage.sqlite.ingest_process import IngestProcess
from meterd.storage.sqlite.transactions import in_transaction, rollback, storage_error

T = TypeVar("T")
# Each job's events in; per job, stored/duplicate flags or the IdConflict that refused it.
IngestFn = Callable[
    [sqlite3.Connection, Sequence[Sequence[NewEvent]]], list[list[bool] | IdConflict]
]

# Bounds one transaction, so a flood of requests still commits often.
MAX_GROUP_EVENTS = 20_000


class _Job:
    __slots__ = ("loop", "future")

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.future: asyncio.Future[Any] = self.loop.create_future()


class _IngestJob(_Job):
    __slots__ = ("events",)

    def __init__(self, events: Sequence[NewEvent]) -> None:
        super().__init__()
        self.events = events


class _CallJob(_Job):
    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[sqlite3.Connection], Any]) -> None:
        super().__init__()
        self.fn = fn


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


_Settlement = tuple[asyncio.Future[Any], Any, BaseException | None]


def _settle_all(settlements: list[_Settlement]) -> None:
    for future, result, error in settlements:
        _settle(future, result, error)


_STOP = object()


class Writer:
    """Owns the single read-write connection; every write goes through here."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        ingest: IngestFn,
        *,
        max_pending_events: int = 100_000,
        process: IngestProcess | None = None,
    ) -> None:
        self._connect = connect
        self._ingest = ingest
        # When set, ingest transactions run there, outside this process's GIL.
        self._process = process
        self._max_pending = max_pending_events
        # Events queued but not yet committed; only the event loop thread changes it.
        self.pending_events = 0
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="meterd-sqlite-writer", daemon=True)
        # Committed ingest transactions, to see group commit at work.
        self.ingest_transactions = 0
        self.commit_sizes = CommitSizes()

    def start(self) -> None:
        if self._process is not None:
            self._process.start()
        self._thread.start()

    def stop(self) -> None:
        """Finish every queued write, then close the connection."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()

    async def ingest(self, events: Sequence[NewEvent]) -> list[bool]:
        """Queue events for the next group commit; refuse them when the queue is full."""
        if self.pending_events + len(events) > self._max_pending and self.pending_events:
            raise Overloaded(pending=self.pending_events)
        job = _IngestJob(events)
        self.pending_events += len(events)
        try:
            self._queue.put(job)
            result: list[bool] = await job.future
        finally:
            self.pending_events -= len(events)
        return result

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(connection)` in a transaction of its own."""
        job = _CallJob(fn)
        self._queue.put(job)
        result: T = await job.future
        return result

    def _run(self) -> None:
        conn = self._connect()
        try:
            while True:
                jobs, stop = self._take_jobs()
                ingest_jobs = [job for job in jobs if isinstance(job, _IngestJob)]
                if ingest_jobs:
                    self._run_ingest(conn, ingest_jobs)
                call_jobs = [job for job in jobs if isinstance(job, _CallJob)]
                if call_jobs:
                    self._run_calls(conn, call_jobs)
                if stop:
                    return
        finally:
            conn.close()
            if self._process is not None:
                self._process.stop()

    def _take_jobs(self) -> tuple[list[_Job], bool]:
        """Block for one job, then take whatever else is already queued."""
        jobs: list[_Job] = []
        events = 0
        item = self._queue.get()
        while True:
            if item is _STOP:
                return jobs, True
            assert isinstance(item, _Job)
            jobs.append(item)
            if isinstance(item, _IngestJob):
                events += len(item.events)
            if events >= MAX_GROUP_EVENTS:
                return jobs, False
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return jobs, False

    def _run_ingest(self, conn: sqlite3.Connection, jobs: list[_IngestJob]) -> None:
        events = [job.events for job in jobs]
        try:
            if self._process is not None:
                results = self._process.run(events)
            else:
                results = in_transaction(conn, lambda c: self._ingest(c, events))
        except BaseException as error:  # noqa: B036 - every waiter must hear of the failure
            _settle_jobs([(job, None, error) for job in jobs])
            return
        self.ingest_transactions += 1
        self.commit_sizes.observe(sum(len(job.events) for job in jobs))
        _settle_jobs(
            [
                (job, None, result) if isinstance(result, IdConflict) else (job, result, None)
                for job, result in zip(jobs, results, strict=True)
            ]
        )

    def _run_calls(self, conn: sqlite3.Connection, jobs: list[_CallJob]) -> None:
        """Every queued call in one transaction, so they share one commit.

        Each call runs in a savepoint of its own: a call that fails undoes only its
        own writes. Nobody hears of a result before the commit.
        """
        try:
            conn.execute("BEGIN IMMEDIATE")
            outcomes = [_in_savepoint(conn, job) for job in jobs]
            conn.execute("COMMIT")
        except BaseException as error:  # noqa: B036 - every waiter must hear of the failure
            rollback(conn)
            failure = storage_error(error)
            outcomes = [(job, None, failure) for job in jobs]
        _settle_jobs(outcomes)


_Outcome = tuple[_Job, Any, BaseException | None]


def _in_savepoint(conn: sqlite3.Connection, job: _CallJob) -> _Outcome:
    conn.execute("SAVEPOINT call")
    try:
        result = job.fn(conn)
    except BaseException as error:  # noqa: B036 - the call's waiter hears of it
        if not conn.in_transaction:
            raise  # SQLite rolled the whole transaction back (a full disk does that)
        conn.execute("ROLLBACK TO call")
        conn.execute("RELEASE call")
        return job, None, storage_error(error)
    conn.execute("RELEASE call")
    return job, result, None


def _settle_jobs(outcomes: list[_Outcome]) -> None:
    """Answer every job, with one wake-up per event loop rather than one per job."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Settlement]] = {}
    for job, result, error in outcomes:
        by_loop.setdefault(job.loop, []).append((job.future, result, error))
    for loop, settlements in by_loop.items():
        loop.call_soon_threadsafe(_settle_all, settlements)
