"""Closing a completed period of 100,000 customers, as the server's scheduler does it.

Setup, once: a `daily` period three days ago in which C customers each have a few
`api.calls` events, through `SQLiteStore.ingest` (no HTTP). Each round closes a copy of
that database: `PeriodCloser.close_completed`, the call `meterd serve`'s scheduler makes,
on a store opened as the server opens it (synchronous=FULL). With one enabled webhook,
each closed record also writes its outbox row in the same transaction, as it would in
a deployment that sends webhooks. Afterwards exactly C closed records and C pending
deliveries must exist.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from bench.figures import Figure, PartResult
from bench.server import remove_db
from meterd.closing import PeriodCloser
from meterd.config.loader import parse_config
from meterd.config.model import SystemConfig
from meterd.ingest import NewEvent
from meterd.storage.sqlite.store import SQLiteStore
from meterd.timeutil import now_ms

DAY_MS = 86_400_000
EVENTS_PER_CUSTOMER = 3
INGEST_CHUNK = 10_000
SECRET = "whsec_" + "bWV0ZXJkLWJlbmNoLWNsb3NlLXNlY3JldC1rZXk="
CONFIG = {
    "periods": ["daily"],
    "events": {"api.calls": {"op": "sum"}},
    # Never delivered here (no worker runs): the close only writes the outbox rows.
    "webhooks": [{"url": "http://127.0.0.1:9/hook", "secret": SECRET, "enabled": True}],
}
TARGET_CUSTOMERS = 100_000
TARGET_S = 30.0
BUDGET_S = 600.0


def bench_config() -> SystemConfig:
    return parse_config(json.dumps(CONFIG).encode(), "<bench close config>")


async def load(db: Path, customers: int) -> None:
    """EVENTS_PER_CUSTOMER events for each customer, spread over one day three days ago."""
    now = now_ms()
    day_start = (now // DAY_MS - 3) * DAY_MS
    store = SQLiteStore(str(db), synchronous="NORMAL")  # the data is the same; loads faster
    await store.open()
    try:
        total = customers * EVENTS_PER_CUSTOMER
        for first in range(0, total, INGEST_CHUNK):
            await store.ingest(
                [
                    NewEvent(
                        id=f"close-{i}",
                        event_type="api.calls",
                        customer_id=f"cust_{i % customers:06d}",
                        value=float(1 + i % 7),
                        metadata=None,
                        ts_ms=day_start + (i * 7_919) % DAY_MS,
                        received_ms=now,
                    )
                    for i in range(first, min(first + INGEST_CHUNK, total))
                ]
            )
    finally:
        await store.close()


def copy_db(source: Path, target: Path) -> None:
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


@dataclass
class CloseRun:
    seconds: float
    closed: int
    closed_records: int
    pending_deliveries: int


async def close_once(db: Path, config: SystemConfig) -> CloseRun:
    store = SQLiteStore(str(db))
    await store.open()
    try:
        started = time.perf_counter()
        closer = PeriodCloser(store, config)
        closed = await asyncio.wait_for(closer.close_completed(now_ms()), BUDGET_S)
        seconds = time.perf_counter() - started
    finally:
        await store.close()
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        records = conn.execute("SELECT count(*) FROM aggregations WHERE status = 'closed'")
        closed_records = int(records.fetchone()[0])
        deliveries = conn.execute("SELECT count(*) FROM deliveries WHERE status = 'pending'")
        pending = int(deliveries.fetchone()[0])
    return CloseRun(seconds, closed, closed_records, pending)


def measure(workdir: Path, *, customers: int, rounds: int) -> PartResult:
    config = bench_config()
    template = workdir / "close-template.db"
    started = time.perf_counter()
    asyncio.run(load(template, customers))
    load_s = time.perf_counter() - started
    runs: list[CloseRun] = []
    problems: list[str] = []
    try:
        for index in range(rounds):
            db = workdir / f"close-{index}.db"
            copy_db(template, db)
            try:
                run = asyncio.run(close_once(db, config))
            finally:
                remove_db(db)
            runs.append(run)
            counts = {run.closed, run.closed_records, run.pending_deliveries}
            if counts != {customers}:
                problems.append(
                    f"close round {index}: {run.closed:,} closed, {run.closed_records:,} closed"
                    f" records and {run.pending_deliveries:,} pending deliveries;"
                    f" {customers:,} of each expected"
                )
    finally:
        remove_db(template)
    figure = Figure(
        key="period_close",
        name=f"close {customers:,} customer-periods",
        unit="s",
        runs=[run.seconds for run in runs],
        lower_is_better=True,
        target=f"≤ {TARGET_S:g} s for {TARGET_CUSTOMERS:,}",
    )
    if customers == TARGET_CUSTOMERS:
        figure.met = figure.value <= TARGET_S
    figure.notes.append(
        f"{customers / figure.value:,.0f} records/s; PeriodCloser.close_completed on SQLite"
        f" (synchronous=FULL), {EVENTS_PER_CUSTOMER} events per customer, one webhook outbox"
        " row per record"
    )
    details = {
        "customers": customers,
        "events": customers * EVENTS_PER_CUSTOMER,
        "load_seconds": round(load_s, 3),
        "runs": [run.__dict__ for run in runs],
    }
    return PartResult([figure], problems, details)
