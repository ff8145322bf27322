"""Attempt records written in batches: the outbox's own group commit.

Attempts that end while a batch is being written wait for the next one, so under
load one transaction records many attempts, and at rest each is written at once.
"""

from __future__ import annotations

import asyncio

from meterd.storage.base import AttemptOutcome, Store


class AttemptRecorder:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._waiting: list[AttemptOutcome] = []
        self._batch_done: asyncio.Future[None] | None = None
        self._writing: asyncio.Task[None] | None = None

    async def record(self, outcome: AttemptOutcome) -> None:
        """Return once `outcome` is committed; raise what recording its batch raised."""
        loop = asyncio.get_running_loop()
        if self._batch_done is None:
            self._batch_done = loop.create_future()
        done = self._batch_done
        self._waiting.append(outcome)
        if self._writing is None:
            self._writing = loop.create_task(self._write_batches())
        await asyncio.shield(done)

    async def _write_batches(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                done, self._batch_done = self._batch_done, None
                assert done is not None
                try:
                    await self._store.record_attempts(batch)
                except Exception as error:
                    done.set_exception(error)
                    # Every waiter hears of it; nobody else needs to retrieve it.
                    done.exception()
                else:
                    done.set_result(None)
        finally:
            self._writing = None
