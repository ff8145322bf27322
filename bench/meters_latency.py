"""Meters v2 read latency (DESIGN §5, §6, §7), in-process on a real store (no HTTP).

    .venv/bin/python -m bench.meters_latency [--events N] [--customers C] [--queries Q]
                                             [--backend sqlite|postgresql] [--db PATH]

1. Load: one heavy customer with N events in the current month for each of four meters
   (`latency.ms` percentile 95, `active.users` unique_count, `seats`
   time_weighted_avg, `llm.tokens` sum grouped by model and direction, 100 groups),
   and N plain `api.calls` events spread over C other customers and the same month.
   (--plain-events N sets the plain count apart, e.g. 1,000,000 for the usage query.)
2. Time Q reads of the heavy customer's live usage of each meter (`customer_totals`),
   and Q usage queries of 30 daily windows over all customers (`run_usage_query`,
   `api.calls` from its rollups and `llm.tokens` by model). The grouped reads are
   timed twice: "(raw events)" before the group rollups (groups and levels) are
   built, then after; `seats` (time_weighted_avg) likewise.
3. The limits beside the figures: `count(*)`, fetching every value, and fetching them
   sorted, over one meter's raw events of the month through its covering index: what
   any raw-event percentile or distinct count costs at least.

Every loop is bounded in count and time. Prints JSON with p50/p99 in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from meterd.aggregation import ops_for
from meterd.config.model import EventTypeConfig, PeriodConfig, SystemConfig
from meterd.ingest import NewEvent
from meterd.meters.query import UsageQuery, run_usage_query, usage_query
from meterd.meters.usage import customer_totals
from meterd.periods import PeriodBounds, PeriodCalendar
from meterd.storage.base import Store
from meterd.storage.postgres.store import PostgresStore
from meterd.storage.sqlite.store import SQLiteStore
from meterd.timeutil import now_ms

HEAVY = "heavy"
METERS: dict[str, EventTypeConfig] = {
    "latency.ms": EventTypeConfig("percentile", percentile=95),
    "active.users": EventTypeConfig("unique_count", property_key="userId"),
    "seats": EventTypeConfig("time_weighted_avg"),
    "llm.tokens": EventTypeConfig("sum", group_by=("model", "direction")),
    "api.calls": EventTypeConfig("sum"),
}
TARGET_METER_P99_MS = 50.0
TARGET_QUERY_P99_MS = 200.0
TIME_BUDGET_S = 60.0
BATCH = 5_000


def config() -> SystemConfig:
    return SystemConfig(periods=(PeriodConfig("monthly"),), events=METERS, source="<bench>")


def heavy_events(count: int, start_ms: int, span_ms: int, rng: random.Random) -> list[NewEvent]:
    events = []
    for index in range(count):
        ts = start_ms + rng.randrange(span_ms)
        events.append(
            NewEvent(f"l{index}", "latency.ms", HEAVY, rng.expovariate(0.01), None, ts, ts)
        )
        user = f'{{"userId":"u{rng.randrange(5000)}"}}'.encode()
        events.append(NewEvent(f"u{index}", "active.users", HEAVY, 1, user, ts, ts))
        events.append(NewEvent(f"s{index}", "seats", HEAVY, rng.randrange(1, 50), None, ts, ts))
        group = f'{{"model":"m{rng.randrange(20)}","direction":"d{rng.randrange(5)}"}}'.encode()
        events.append(
            NewEvent(f"t{index}", "llm.tokens", HEAVY, rng.randrange(1, 900), group, ts, ts)
        )
    return events


def plain_events_of(
    count: int, customers: int, start_ms: int, span_ms: int, rng: random.Random
) -> list[NewEvent]:
    return [
        NewEvent(f"a{i}", "api.calls", f"c{rng.randrange(customers)}", 1, None, ts, ts)
        for i in range(count)
        for ts in (start_ms + rng.randrange(span_ms),)
    ]


async def load(store: Store, events: list[NewEvent]) -> float:
    started = time.perf_counter()
    for index in range(0, len(events), BATCH):
        await store.ingest(events[index : index + BATCH])
    return time.perf_counter() - started


async def timed(action: Callable[[], Awaitable[Any]], queries: int) -> dict[str, float]:
    await action()  # warm caches
    times = []
    deadline = time.monotonic() + TIME_BUDGET_S
    for _ in range(queries):
        started = time.perf_counter()
        await action()
        times.append((time.perf_counter() - started) * 1000)
        if time.monotonic() > deadline:
            break
    times.sort()
    return {
        "p50_ms": round(statistics.median(times), 2),
        "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 2),
        "reads": len(times),
    }


async def load_month(
    store: Store,
    *,
    events: int,
    customers: int,
    plain_events: int | None = None,
    group_rollups: bool = True,
) -> dict[str, Any]:
    """The heavy customer's month (`events` per meter) and `events` plain ones of others.

    Then, as a running server's scheduler would have, fold whole days of rollups and
    build the meters' covering indexes and (unless `group_rollups` is False) the
    group and level rollups.
    """
    now = now_ms()
    month = month_of(now)
    span = max(now - month.start_ms, 3_600_000)
    rng = random.Random(11)
    loaded = await load(store, heavy_events(events, month.start_ms, span, rng))
    plain = events if plain_events is None else plain_events
    loaded += await load(store, plain_events_of(plain, customers, month.start_ms, span, rng))
    await store.compact_rollups(now)
    started = time.perf_counter()
    await store.prepare_meters([t for t, m in METERS.items() if m.reads_events])
    if group_rollups:
        await store.prepare_group_rollups(METERS)
    else:  # none yet: grouped and level reads fold raw events
        await store.prepare_group_rollups({})
    return {
        "events_per_meter": events,
        "plain_events": plain,
        "customers": customers,
        "load_s": round(loaded, 1),
        "index_build_s": round(time.perf_counter() - started, 1),
    }


def month_of(now: int) -> PeriodBounds:
    return PeriodCalendar(PeriodConfig("monthly"), "UTC").bounds_at(now)


async def read_latencies(
    store: Store,
    *,
    queries: int,
    names: tuple[str, ...] = ("latency.ms", "active.users", "seats", "llm.tokens"),
    query_meters: tuple[str, ...] = ("api.calls", "llm.tokens"),
    suffix: str = "",
) -> dict[str, dict[str, float]]:
    """p50/p99 of the heavy customer's live usage per meter, and of 30-day usage queries."""
    cfg = config()
    now = now_ms()
    month = month_of(now)
    ops = ops_for(cfg)
    result: dict[str, dict[str, float]] = {}
    for name in names:
        meters = {name: METERS[name]}

        async def read(meters: dict[str, EventTypeConfig] = meters) -> object:
            return await customer_totals(
                store, customer_id=HEAVY, bounds=month, ops=ops, meters=meters
            )

        result[f"usage {name}{suffix}"] = await timed(read, queries)
    day = 86_400_000
    for meter, group_by in (("api.calls", ()), ("llm.tokens", ("model",))):
        if meter not in query_meters:
            continue
        query = usage_query(
            cfg,
            meter=meter,
            from_ms=now // day * day - 29 * day,
            to_ms=now // day * day + day,
            now_ms=now,
            window_size="day",
            group_by=group_by,
        )

        async def run(query: UsageQuery = query) -> object:
            return await run_usage_query(store, cfg, query)

        result[f"query {meter} 30 days{suffix}"] = await timed(run, max(queries // 5, 5))
    return result


def raw_count_ms(path: str) -> float:
    """The limit: count(*) over one meter's events of the heavy customer's month."""
    return raw_limits_ms(path)["limit count(*) of one meter's events ms"]


def raw_limits_ms(path: str) -> dict[str, float]:
    """What reading one meter's raw events of the heavy customer's month costs at all,
    through its covering index: count(*), every value fetched, and the values sorted
    (the least a raw percentile must do). Medians of 5."""
    month = month_of(now_ms())
    where = (
        " FROM events WHERE customer_id = ? AND ts >= ? AND ts < ? AND event_type = 'latency.ms'"
    )
    queries = {
        "limit count(*) of one meter's events ms": "SELECT count(*)" + where,
        "limit fetch every value of one meter ms": "SELECT value" + where,
        "limit fetch every value sorted (ORDER BY value) ms": "SELECT value"
        + where
        + " ORDER BY value",
    }
    result = {}
    with sqlite3.connect(path) as conn:
        for name, sql in queries.items():
            times = []
            for _ in range(5):
                started = time.perf_counter()
                conn.execute(sql, (HEAVY, month.start_ms, month.end_ms)).fetchall()
                times.append((time.perf_counter() - started) * 1000)
            result[name] = round(statistics.median(times), 2)
    return result


async def measure(
    store: Store,
    *,
    events: int,
    plain_events: int | None,
    customers: int,
    queries: int,
    sqlite_path: str | None,
) -> dict[str, Any]:
    await store.open()
    try:
        result: dict[str, Any] = await load_month(
            store,
            events=events,
            customers=customers,
            plain_events=plain_events,
            group_rollups=False,
        )
        # Grouped reads before the group rollups exist (raw events), then after.
        result.update(
            await read_latencies(
                store,
                queries=queries,
                names=("latency.ms", "active.users", "seats", "llm.tokens"),
                query_meters=("llm.tokens",),
                suffix=" (raw events)",
            )
        )
        started = time.perf_counter()
        await store.prepare_group_rollups(METERS)
        result["group_rollups_build_s"] = round(time.perf_counter() - started, 1)
        result.update(await read_latencies(store, queries=queries))
        if sqlite_path is not None:
            result.update(raw_limits_ms(sqlite_path))
        return result
    finally:
        await store.close()


async def ingest_cost(directory: str, *, events: int, rounds: int) -> dict[str, Any]:
    """Ingest of the heavy customer's month (`events` per meter, 5,000-event batches,
    SQLite synchronous=OFF) into a fresh store, without group rollups and with them
    kept at ingest, alternating; events/s per run."""
    now = now_ms()
    month = month_of(now)
    span = max(now - month.start_ms, 3_600_000)
    data = heavy_events(events, month.start_ms, span, random.Random(11))
    runs: dict[str, list[float]] = {"without group rollups": [], "with group rollups": []}
    for index in range(rounds * 2):
        name = "with group rollups" if index % 2 else "without group rollups"
        store = SQLiteStore(str(Path(directory) / f"ingest{index}.db"), synchronous="OFF")
        await store.open()
        try:
            if index % 2:
                await store.prepare_group_rollups(METERS)
            runs[name].append(round(len(data) / await load(store, data)))
        finally:
            await store.close()
    medians = {name: statistics.median(values) for name, values in runs.items()}
    return {
        "ingest events per s": runs,
        "ingest ratio with/without": round(
            medians["with group rollups"] / medians["without group rollups"], 2
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.meters_latency")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--plain-events", type=int, default=None, help="default: --events")
    parser.add_argument("--customers", type=int, default=1_000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument(
        "--ingest-rounds",
        type=int,
        default=0,
        help="instead of reads: ingest cost of group rollups, N alternating rounds",
    )
    args = parser.parse_args(argv)
    if args.ingest_rounds:
        with tempfile.TemporaryDirectory() as directory:
            found = asyncio.run(
                ingest_cost(directory, events=args.events, rounds=args.ingest_rounds)
            )
        print(json.dumps(found, indent=2))
        return 0
    with tempfile.TemporaryDirectory() as directory:
        path = str(Path(directory) / "meters.db")
        store: Store = (
            SQLiteStore(path, synchronous="OFF")
            if args.backend == "sqlite"
            else PostgresStore(args.postgres_url)
        )
        result = asyncio.run(
            measure(
                store,
                events=args.events,
                plain_events=args.plain_events,
                customers=args.customers,
                queries=args.queries,
                sqlite_path=path if args.backend == "sqlite" else None,
            )
        )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
