"""SQLite's ingest process (what `meterd serve` runs): the same answers and the same rows
as the writer thread, and a process that dies costs only the transaction in flight."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
from pathlib import Path

import pytest

from meterd.errors import IdConflict, StorageUnavailable
from meterd.ingest import NewEvent
from meterd.periods import PeriodBounds
from meterd.storage.base import EventQuery
from meterd.storage.sqlite.store import SQLiteStore

NOW = 1_790_000_000_000
DAY_MS = 86_400_000


def event(event_id: str, customer: str = "c1", value: float = 1.0, **more: object) -> NewEvent:
    fields: dict[str, object] = {
        "event_type": "api.calls",
        "customer_id": customer,
        "value": value,
        "metadata": None,
        "ts_ms": NOW - 1_000,
        "received_ms": NOW,
    } | more
    return NewEvent(event_id, **fields)  # type: ignore[arg-type]


# Requests that reach the writer together: new events, retries of them, a reused id with
# other content (refused whole), an id twice in one request, and exact decimal sums.
REQUESTS = [
    [event(f"a{i}", customer=f"c{i % 3}", value=0.1) for i in range(30)],
    [event("a1", customer="c1", value=0.1), event("b1", value=2.5)],
    [event("b2"), event("a2", customer="c2", value=7.0)],
    [event("d1", metadata=b'{"k":"v"}'), event("d1", metadata=b'{"k":"v"}')],
    [event("e1", event_type="storage.bytes", value=1e6, ts_ms=NOW - 5 * DAY_MS)],
]


def ingest_processes() -> list[multiprocessing.process.BaseProcess]:
    return [p for p in multiprocessing.active_children() if p.name == "meterd-ingest"]


async def answers(store: SQLiteStore) -> list[object]:
    results = await asyncio.gather(
        *(store.ingest(request) for request in REQUESTS), return_exceptions=True
    )
    return [r.conflicts if isinstance(r, IdConflict) else r for r in results]


async def test_the_ingest_process_answers_and_stores_as_the_writer_thread(
    tmp_path: Path,
) -> None:
    thread = SQLiteStore(str(tmp_path / "thread.db"))
    process = SQLiteStore(str(tmp_path / "process.db"), ingest_process=True)
    await thread.open()
    await process.open()
    try:
        assert len(ingest_processes()) == 1
        by_thread, by_process = await answers(thread), await answers(process)
        assert by_process == by_thread
        assert by_process[2] == [(1, "a2", ["value"])]
        assert by_process[3] == [True, False]
        query = EventQuery(limit=1_000)
        assert await process.list_events(query) == await thread.list_events(query)
        assert len(await process.list_events(query)) == 33
        bounds = PeriodBounds("all", NOW - 30 * DAY_MS, NOW + DAY_MS)
        for customer in ("c0", "c1", "c2"):
            partials = await process.customer_partials(customer, bounds)
            assert partials == await thread.customer_partials(customer, bounds)
        assert str((await process.customer_partials("c0", bounds))["api.calls"].sum) == "1"
    finally:
        await thread.close()
        await process.close()
    assert ingest_processes() == []


async def test_a_killed_ingest_process_fails_what_was_in_flight_and_the_next_request_stores(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(str(tmp_path / "m.db"), ingest_process=True)
    await store.open()
    try:
        assert await store.ingest([event("before")]) == [True]
        [child] = ingest_processes()
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
        with pytest.raises(StorageUnavailable, match="ingest process ended"):
            await store.ingest([event("lost")])
        # A new process takes the next request; nothing reached the dead one.
        assert await store.ingest([event("lost"), event("before")]) == [True, False]
        [restarted] = ingest_processes()
        assert restarted.pid != child.pid
        stored = await store.list_events(EventQuery(limit=10))
        assert sorted(e.id for e in stored) == ["before", "lost"]
    finally:
        await store.close()
    assert ingest_processes() == []
