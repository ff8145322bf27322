"""The background tasks `meterd serve` runs (schedulers, delivery worker): running a step
periodically, and stopping a task."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("meterd")


async def cancel_and_wait(task: asyncio.Task[None] | None) -> None:
    """Cancel `task` and wait until it has finished unwinding."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass


class Periodic:
    """Runs `step(clock())` every `interval_s` seconds until stopped.

    `on_done` runs after a step that returned something true (work was done). A step
    that fails (database busy or down) is logged as `failure` and retried on the next tick.
    """

    def __init__(
        self,
        name: str,
        step: Callable[[int], Awaitable[object]],
        interval_s: float,
        *,
        on_done: Callable[[], None],
        clock: Callable[[], int],
        failure: str,
    ) -> None:
        self.name = name
        self.step = step
        self.interval_s = interval_s
        self.on_done = on_done
        self.clock = clock
        self.failure = failure
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            try:
                if await self.step(self.clock()):
                    self.on_done()
            except Exception:
                log.exception(self.failure)
            await asyncio.sleep(self.interval_s)
