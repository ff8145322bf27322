"""Meters v2 figures for `python -m bench` (part `meters`), from bench/meters_latency.py.

One SQLite database is loaded once (a heavy customer-month of N events per meter, N
plain events over other customers); each round then times the reads. Figures: p99 of
the heavy customer's live usage per meter (percentile, unique_count,
time_weighted_avg, grouped sum) and of a 30-daily-window usage query over all
customers; the limit is a count(*) of one meter's raw events through its index.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from bench import meters_latency
from bench.figures import Figure, PartResult
from bench.server import remove_db
from meterd.storage.sqlite.store import SQLiteStore

TARGET_EVENTS = 100_000
TARGETS_MS = {
    "usage latency.ms": 50.0,
    "usage active.users": 50.0,
    "usage seats": 50.0,
    "usage llm.tokens": 10.0,
    "query api.calls 30 days": 200.0,
    "query llm.tokens 30 days": 200.0,
}


def measure(workdir: Path, *, events: int, customers: int, queries: int, rounds: int) -> PartResult:
    path = workdir / "meters.db"
    store = SQLiteStore(str(path), synchronous="OFF")
    runs: dict[str, list[float]] = {name: [] for name in TARGETS_MS}
    limits: list[float] = []

    async def run() -> dict[str, object]:
        await store.open()
        try:
            loaded = await meters_latency.load_month(store, events=events, customers=customers)
            for _ in range(rounds):
                latencies = await meters_latency.read_latencies(store, queries=queries)
                for name, figures in latencies.items():
                    runs[name].append(figures["p99_ms"])
                limits.append(meters_latency.raw_count_ms(str(path)))
            return loaded
        finally:
            await store.close()

    try:
        details = asyncio.run(run())
    finally:
        remove_db(path)
    result = PartResult([], details=details)
    for name, target in TARGETS_MS.items():
        figure = Figure(
            key="meters_" + name.replace(" ", "_").replace(".", "_"),
            name=f"{name} p99 ({events:,} events per meter)",
            unit="ms",
            runs=runs[name],
            lower_is_better=True,
            limit="count(*) of one meter's events",
            limit_runs=limits,
            target=f"≤ {target:g} ms at {TARGET_EVENTS:,}",
        )
        if events == TARGET_EVENTS:
            figure.met = figure.value <= target
        figure.notes.append("in-process on SQLite (no HTTP), after rollup compaction")
        result.figures.append(figure)
    return result
