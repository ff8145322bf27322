"""Group commit for PostgreSQL: concurrent ingest calls share one transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from meterd.errors import IdConflict, Overloaded
from meterd.ingest import NewEvent
from meterd.storage.commitsizes import CommitSizes

# Each job's events in; per job, stored/duplicate flags or the IdConflict that refused it.
IngestFn = Callable[[list[Sequence[NewEvent]]], Awaitable[list[list[bool] | IdConflict]]]

# Bounds one transaction, so a flood of requests still commits often.
MAX_GROUP_EVENTS = 20_000


class IngestBatcher:
    """Queues ingest calls; `lanes` tasks each take everything queued and commit it at once."""

    def __init__(
        self, ingest: IngestFn, *, lanes: int = 2, max_pending_events: int = 100_000
    ) -> None:
        self._ingest = ingest
        self._max_pending = max_pending_events
        self.pending_events = 0
        self._queue: asyncio.Queue[tuple[Sequence[NewEvent], asyncio.Future[list[bool]]]] = (
            asyncio.Queue()
        )
        self._lanes = lanes
        self._tasks: list[asyncio.Task[None]] = []
        self.transactions = 0
        self.commit_sizes = CommitSizes()

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run()) for _ in range(self._lanes)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def ingest(self, events: Sequence[NewEvent]) -> list[bool]:
        """Queue events for the next group commit; refuse them when the queue is full."""
        if self.pending_events + len(events) > self._max_pending and self.pending_events:
            raise Overloaded(pending=self.pending_events)
        future: asyncio.Future[list[bool]] = asyncio.get_running_loop().create_future()
        self.pending_events += len(events)
        try:
            self._queue.put_nowait((events, future))
            return await future
        finally:
            self.pending_events -= len(events)

    async def _run(self) -> None:
        while True:
            jobs = [await self._queue.get()]
            count = len(jobs[0][0])
            while count < MAX_GROUP_EVENTS and not self._queue.empty():
                jobs.append(self._queue.get_nowait())
                count += len(jobs[-1][0])
            await self._commit(jobs)

    async def _commit(
        self, jobs: list[tuple[Sequence[NewEvent], asyncio.Future[list[bool]]]]
    ) -> None:
        try:
            results = await self._ingest([events for events, _ in jobs])
        except Exception as error:
            for _, future in jobs:
                if not future.done():
                    future.set_exception(error)
            return
        self.transactions += 1
        self.commit_sizes.observe(sum(len(events) for events, _ in jobs))
        for (_, future), result in zip(jobs, results, strict=True):
            if future.done():
                continue
            if isinstance(result, IdConflict):
                future.set_exception(result)
            else:
                future.set_result(result)
