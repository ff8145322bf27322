"""Revising closed records after corrections: the settle's cost follows the corrections,
not the number of events stored (DESIGN.md section 8: finding what changed never scans
events).

Setup, once per size: SQLite, `daily` periods over the last 30 days; `api.calls`
events of 1,000 customers fill the database to N events, and 20 customers hold a
`time_weighted_avg` level (`seats`) that changes every third day. Everything is closed.
Each round copies that database, voids 40 level events (two per level customer; not
timed), then times `PeriodCloser.revise_touched`, the call the scheduler makes: each
void revises its own day and the days its level held into, up to the next level event.
The same is done with a database of N/10 events, the rounds of the two sizes
alternating; the ratio of the two medians is near 1 when the cost does not grow with
the events stored.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path

from bench.figures import Figure, PartResult
from bench.period_close import copy_db
from bench.server import remove_db
from meterd import corrections
from meterd.closing import PeriodCloser
from meterd.config.loader import parse_config
from meterd.config.model import SystemConfig
from meterd.ingest import NewEvent
from meterd.storage.base import KeyIdentity
from meterd.storage.sqlite.store import SQLiteStore
from meterd.timeutil import now_ms

DAY_MS = 86_400_000
DAYS = 30
CUSTOMERS = 1_000
LEVEL_CUSTOMERS = 20
LEVEL_EVERY_DAYS = 3
VOIDED_DAYS = (6, 15)  # which level events of each level customer are voided
INGEST_CHUNK = 10_000
KEY = KeyIdentity("bench", "mk_bench")
SECRET = "whsec_" + "bWV0ZXJkLWJlbmNoLXJldmlzaW9uLXNlY3JldA=="
CONFIG = {
    "periods": ["daily"],
    "events": {"api.calls": {"op": "sum"}, "seats": {"op": "time_weighted_avg"}},
    # Never delivered here: each revision only writes its outbox row.
    "webhooks": [{"url": "http://127.0.0.1:9/hook", "secret": SECRET, "enabled": True}],
}
MIN_RATIO = 0.5


@dataclass
class SettleRun:
    seconds: float
    written: int


def bench_config() -> SystemConfig:
    return parse_config(json.dumps(CONFIG).encode(), "<bench revision config>")


def first_day(now: int) -> int:
    return (now // DAY_MS - DAYS - 1) * DAY_MS


async def load(db: Path, events: int, config: SystemConfig, now: int) -> None:
    """`events` events in all (levels included), then every completed day closed."""
    start = first_day(now)
    levels = [
        NewEvent(
            id=f"seat-{c}-{day}",
            event_type="seats",
            customer_id=f"level_{c:02d}",
            value=float(5 + (c + day) % 7),
            metadata=None,
            ts_ms=start + day * DAY_MS + c * 60_000,
            received_ms=now,
        )
        for c in range(LEVEL_CUSTOMERS)
        for day in range(0, DAYS, LEVEL_EVERY_DAYS)
    ]
    store = SQLiteStore(str(db), synchronous="NORMAL")  # the data is the same; loads faster
    await store.open()
    try:
        await store.ingest(levels)
        calls = events - len(levels)
        for first in range(0, calls, INGEST_CHUNK):
            await store.ingest(
                [
                    NewEvent(
                        id=f"call-{i}",
                        event_type="api.calls",
                        customer_id=f"cust_{i % CUSTOMERS:04d}",
                        value=1.0,
                        metadata=None,
                        ts_ms=start + (i * 7_919_000) % (DAYS * DAY_MS),
                        received_ms=now,
                    )
                    for i in range(first, min(first + INGEST_CHUNK, calls))
                ]
            )
        await PeriodCloser(store, config).close_completed(now)
    finally:
        await store.close()


async def settle_once(db: Path, config: SystemConfig, now: int) -> SettleRun:
    store = SQLiteStore(str(db))
    await store.open()
    try:
        body = b'{"reason": "benchmark"}'
        for c in range(LEVEL_CUSTOMERS):
            for day in VOIDED_DAYS:
                await corrections.void_event(
                    store, event_id=f"seat-{c}-{day}", body=body, key=KEY, now_ms=now
                )
        closer = PeriodCloser(store, config)
        started = time.perf_counter()
        written = await closer.revise_touched(now)
        return SettleRun(time.perf_counter() - started, written)
    finally:
        await store.close()


def measure(workdir: Path, *, events: int, rounds: int) -> PartResult:
    config = bench_config()
    now = now_ms()
    sizes = (events // 10, events)
    runs: dict[int, list[SettleRun]] = {size: [] for size in sizes}
    problems: list[str] = []
    load_seconds = {}
    templates = {size: workdir / f"revision-template-{size}.db" for size in sizes}
    try:
        for size, template in templates.items():
            started = time.perf_counter()
            asyncio.run(load(template, size, config, now))
            load_seconds[size] = round(time.perf_counter() - started, 3)
        # The two sizes alternate, so both see the machine's load alike.
        for index in range(rounds):
            for size, template in templates.items():
                db = workdir / f"revision-{size}-{index}.db"
                copy_db(template, db)
                try:
                    runs[size].append(asyncio.run(settle_once(db, config, now)))
                finally:
                    remove_db(db)
    finally:
        for template in templates.values():
            remove_db(template)
    written = {run.written for size in sizes for run in runs[size]}
    if len(written) != 1 or not written.issubset(range(1, 10**6)):
        problems.append(f"revisions written differ between runs or sizes: {sorted(written)}")
    small, large = sizes
    corrections_made = LEVEL_CUSTOMERS * len(VOIDED_DAYS)
    figure = Figure(
        key="revision_settle",
        name=f"settle {corrections_made} level voids, {large:,} events stored",
        unit="ms",
        runs=[run.seconds * 1000 for run in runs[large]],
        lower_is_better=True,
        limit=f"the same with {small:,} events stored",
        limit_runs=[run.seconds * 1000 for run in runs[small]],
        target=f"ratio ≥ {MIN_RATIO:g}: the cost follows the corrections, not the events",
    )
    ratio = figure.ratio
    figure.met = ratio is not None and ratio >= MIN_RATIO
    figure.notes.append(
        f"{next(iter(written), 0)} records revised per round (each void: its day and the"
        " days its level held into); PeriodCloser.revise_touched on SQLite"
    )
    details = {
        "sizes": list(sizes),
        "load_seconds": load_seconds,
        "runs": {size: [run.__dict__ for run in runs[size]] for size in sizes},
    }
    return PartResult([figure], problems, details)
