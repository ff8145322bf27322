"""Entitlement check latency, and what alert tracking costs batch ingest.

    .venv/bin/python -m bench.entitlements [--events N] [--customers C] [--queries Q]
                                           [--batches B] [--rounds R] [--db PATH]

1. Latency: N events loaded as bench/usage_latency.py loads them (skewed over C
   customers, two past months and this month; --db reuses a loaded file), every
   customer given a monthly `api.calls` limit, then `meterd serve` on 127.0.0.1 and Q
   sequential keep-alive `GET /customers/{id}/entitlements/api.calls` (customers drawn
   by activity), next to `GET /ping` on the same connection (the HTTP floor), and the
   same calls in-process (`entitlements.entitlement`, no HTTP).
2. Ingest: B batches of 1,000 events over 1,000 customers into a fresh SQLite file
   (synchronous=FULL, as `meterd serve`), three ways in alternation, R rounds each:
   alert tracking switched off (the code before this feature), no customer with limits
   (one constant-time query per transaction), limits only for a customer that sends
   nothing (one lookup of the transaction's customers), and every customer with limits
   (a touch row each).
   With --postgres URL, only this comparison, on fresh schemas of that database.

Every loop is bounded in count and time. Figures go to bench/results/entitlements.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
from tests.acceptance.server import MeterdProcess

from bench import machine, postgres_ingest, usage_latency
from bench.figures import Figure, PartResult, median
from meterd.aggregation import calendars_for, ops_for
from meterd.alerts import AlertChecker
from meterd.config.loader import parse_config
from meterd.config.model import SystemConfig
from meterd.customers import CustomerIn, put_customer
from meterd.entitlements import entitlement
from meterd.ingest import NewEvent
from meterd.storage.base import Store
from meterd.storage.postgres import store as postgres_store
from meterd.storage.postgres.alerts import touch_watched as postgres_touch
from meterd.storage.postgres.store import PostgresStore
from meterd.storage.sqlite import event_insert as sqlite_ingest
from meterd.storage.sqlite.alerts import touch_watched as sqlite_touch
from meterd.storage.sqlite.store import SQLiteStore
from meterd.timeutil import now_ms

RESULTS = Path(__file__).parent / "results" / "entitlements.json"
TARGET_P99_MS = 5.0
TARGET_EVENTS = 10_000_000
INGEST_BATCH = 1_000
INGEST_CUSTOMERS = 1_000
QUERY_BUDGET_S = 120.0
LOAD_BUDGET_S = 3_600.0
LIMIT = {"api.calls": {"period": "monthly", "limit": 1_000_000}}


def config() -> SystemConfig:
    return parse_config(json.dumps(usage_latency.CONFIG).encode(), "<bench config>")


def summary(samples: Sequence[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "p50_ms": usage_latency.percentile(ordered, 50),
        "p99_ms": usage_latency.percentile(ordered, 99),
        "max_ms": ordered[-1],
    }


async def give_limits(store: Store, conf: SystemConfig, customers: Iterable[str]) -> None:
    calendars = calendars_for(conf)
    given = CustomerIn(plan=None, stripe_customer=None, limits=json.dumps(LIMIT).encode())
    for customer in customers:
        await put_customer(
            store,
            customer_id=customer,
            given=given,
            config=conf,
            calendars=calendars,
            now_ms=now_ms(),
        )


# -- latency -------------------------------------------------------------------


async def prepare(db: Path, events: int, customers: int) -> dict[str, Any]:
    conf = config()
    opts = usage_latency.Options(
        events=events,
        customers=customers,
        queries=0,
        db=db,
        keep=True,
        load_budget_s=LOAD_BUDGET_S,
        query_budget_s=QUERY_BUDGET_S,
        close_budget_s=600.0,
    )
    info = await usage_latency.load(db, opts, conf, usage_latency.Report())
    store = SQLiteStore(str(db), synchronous="NORMAL")
    await store.open()
    try:
        await give_limits(store, conf, (usage_latency.customer_id(r) for r in range(customers)))
    finally:
        await store.close()
    return info


def request_customers(customers: int, queries: int) -> list[str]:
    rng = random.Random(usage_latency.SEED)
    weights = usage_latency.zipf_cum_weights(customers)
    ranks = rng.choices(range(customers), cum_weights=weights, k=queries)
    return [usage_latency.customer_id(rank) for rank in ranks]


def http_latency(db: Path, workdir: Path, wanted: Sequence[str]) -> dict[str, Any]:
    config_path = workdir / "systemconfig.json"
    config_path.write_text(json.dumps(usage_latency.CONFIG))
    key = "mk_bench_" + secrets.token_urlsafe(16)
    server = MeterdProcess(
        workdir,
        *("--db", f"sqlite:///{db}", "--config", str(config_path), "--close-interval", "24h"),
        env={"METERD_API_KEYS": key, "METERD_DATABASE_URL": "", "METERD_CONFIG": ""},
    )
    server.start(timeout=120)
    checks: list[float] = []
    pings: list[float] = []
    try:
        with httpx.Client(base_url=server.url, headers={"x-apikey": key}) as http:
            for customer in wanted[:50]:  # warm-up
                http.get(f"/customers/{customer}/entitlements/api.calls").raise_for_status()
            began = time.perf_counter()
            for customer in wanted:
                if time.perf_counter() - began > QUERY_BUDGET_S:
                    break
                start = time.perf_counter_ns()
                answer = http.get(f"/customers/{customer}/entitlements/api.calls")
                checks.append(usage_latency.timed_ms(start))
                answer.raise_for_status()
                start = time.perf_counter_ns()
                http.get("/ping").raise_for_status()
                pings.append(usage_latency.timed_ms(start))
    finally:
        server.stop()
    return {"entitlement": summary(checks), "ping": summary(pings)}


async def in_process_latency(db: Path, wanted: Sequence[str]) -> dict[str, float]:
    conf = config()
    calendars, ops = calendars_for(conf), ops_for(conf)
    store = SQLiteStore(str(db))
    await store.open()
    samples = []
    try:
        began = time.perf_counter()
        for customer in wanted:
            if time.perf_counter() - began > QUERY_BUDGET_S:
                break
            start = time.perf_counter_ns()
            await entitlement(
                store,
                customer_id=customer,
                meter="api.calls",
                config=conf,
                calendars=calendars,
                ops=ops,
                now_ms=now_ms(),
            )
            samples.append(usage_latency.timed_ms(start))
    finally:
        await store.close()
    return summary(samples)


# -- ingest cost ---------------------------------------------------------------


def tracking_off(backend: str) -> Any:
    """Ingest as before this feature: no watched-customer lookup, no touches."""
    if backend == "sqlite":
        return mock.patch.object(sqlite_ingest, "touch_watched", lambda conn, pairs: None)

    async def nothing(conn: object, pairs: object) -> None:
        return None

    return mock.patch.object(postgres_store, "touch_watched", nothing)


def ingest_batches(batches: int, seed: int) -> list[list[NewEvent]]:
    rng = random.Random(seed)
    ts = now_ms()
    return [
        [
            NewEvent(
                f"b{seed}-{b}-{i}",
                "api.calls",
                f"ing_{rng.randrange(INGEST_CUSTOMERS):04d}",
                rng.randint(1, 5),
                None,
                ts - rng.randrange(3_600_000),
                ts,
            )
            for i in range(INGEST_BATCH)
        ]
        for b in range(batches)
    ]


@contextmanager
def fresh_store(workdir: Path, backend: str, name: str) -> Iterator[Store]:
    """An empty store: a new SQLite file, or a new schema on the PostgreSQL `backend` URL."""
    if backend == "sqlite":
        db = workdir / f"{name}.db"
        try:
            yield SQLiteStore(str(db))
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
        return
    with postgres_ingest.fresh_schema(backend) as schema:
        yield PostgresStore(schema.url)


def timed_tracking(backend: str, spent: list[float]) -> Any:
    """Ingest as it is, adding the time each transaction spends in `touch_watched` to `spent`."""
    if backend == "sqlite":
        original = sqlite_touch

        def timed(conn: Any, pairs: Any) -> None:
            start = time.perf_counter()
            try:
                original(conn, pairs)
            finally:
                spent.append(time.perf_counter() - start)

        return mock.patch.object(sqlite_ingest, "touch_watched", timed)
    original_async = postgres_touch

    async def timed_async(conn: Any, pairs: Any) -> None:
        start = time.perf_counter()
        try:
            await original_async(conn, pairs)
        finally:
            spent.append(time.perf_counter() - start)

    return mock.patch.object(postgres_store, "touch_watched", timed_async)


async def ingest_rate(
    workdir: Path, backend: str, mode: str, batches: int, seed: int
) -> tuple[float, float]:
    """Events/s, and the share of the ingest time spent tracking touches."""
    kind = "sqlite" if backend == "sqlite" else "postgresql"
    spent: list[float] = []
    with fresh_store(workdir, backend, f"ingest-{seed}") as store:
        await store.open()
        try:
            if mode != "tracking off" and mode != "no limits":
                customers = (
                    [f"ing_{c:04d}" for c in range(INGEST_CUSTOMERS)]
                    if mode == "all watched"
                    else ["someone_else"]  # limits exist, but none of the senders has one
                )
                await give_limits(store, config(), customers)
                await AlertChecker(store, config()).check(now_ms())  # the touches limits make
            data = ingest_batches(batches, seed)
            patch = tracking_off(kind) if mode == "tracking off" else timed_tracking(kind, spent)
            with patch:
                began = time.perf_counter()
                for batch in data:
                    await store.ingest(batch)
                seconds = time.perf_counter() - began
            if mode == "all watched":
                touched = await store.touched_meters(after=None, limit=INGEST_CUSTOMERS + 1)
                sent = {event.customer_id for batch in data for event in batch}
                assert len(touched) == len(sent), (len(touched), len(sent))
        finally:
            await store.close()
    return batches * INGEST_BATCH / seconds, sum(spent) / seconds


async def ingest_cost(
    workdir: Path, backend: str, batches: int, rounds: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Events/s per mode and round, and the share of ingest time spent tracking."""
    modes = ("tracking off", "no limits", "others watched", "all watched")
    rates: dict[str, list[float]] = {mode: [] for mode in modes}
    shares: dict[str, list[float]] = {mode: [] for mode in modes[1:]}
    for index in range(rounds):
        for mode in modes:  # alternated, so drift hits every mode alike
            rate, share = await ingest_rate(workdir, backend, mode, batches, index)
            rates[mode].append(rate)
            if mode in shares:
                shares[mode].append(share)
            print(
                f"  ingest round {index}: {mode}: {rate:,.0f} events/s"
                + (f", {share:.2%} of the time in touch_watched" if mode in shares else ""),
                flush=True,
            )
    return rates, shares


# -- the run -------------------------------------------------------------------


def measure(
    workdir: Path,
    *,
    events: int,
    customers: int,
    queries: int,
    batches: int,
    rounds: int,
    db: Path | None = None,
    smoke: bool = False,
) -> PartResult:
    """The figures for `python -m bench` (and this module's own main)."""
    path = db or workdir / f"entitlements-{events}.db"
    info = asyncio.run(prepare(path, events, customers))
    stored = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        count = int(stored.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])
    finally:
        stored.close()
    wanted = request_customers(customers, queries)
    http = http_latency(path, workdir, wanted)
    local = asyncio.run(in_process_latency(path, wanted))
    rates, shares = asyncio.run(ingest_cost(workdir, "sqlite", batches, rounds))
    size = f"{count:,} events"
    check = Figure(
        key=f"entitlement_p99_{events}",
        name=f"entitlement check p99, {size} stored",
        unit="ms",
        runs=[http["entitlement"]["p99_ms"]],
        lower_is_better=True,
        limit="GET /ping p99 (same connection)",
        limit_runs=[http["ping"]["p99_ms"]],
        target=f"≤ {TARGET_P99_MS:g} ms at 10M events",
        met=None if smoke or count < TARGET_EVENTS else http["entitlement"]["p99_ms"] <= 5,
    )
    baseline = rates["tracking off"]
    figures = [check]
    for mode in ("no limits", "others watched", "all watched"):
        figures.append(
            Figure(
                key=f"batch_ingest_{mode.replace(' ', '_')}",
                name=f"batch ingest, {mode}",
                unit="events/s",
                runs=rates[mode],
                limit="the same ingest with alert tracking off",
                limit_runs=baseline,
            )
        )
    details = {
        "events_stored": count,
        "customers": customers,
        "load": info,
        "http": http,
        "in_process": local,
        "ingest_events_per_s": {mode: [round(r) for r in runs] for mode, runs in rates.items()},
        "ingest_medians": {mode: round(median(runs)) for mode, runs in rates.items()},
        "ingest_share_in_touch_watched": {
            mode: round(median(runs), 4) for mode, runs in shares.items()
        },
    }
    return PartResult(figures=figures, details=details)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.entitlements", description=__doc__)
    add = parser.add_argument
    add("--events", type=int, default=1_000_000)
    add("--customers", type=int, default=10_000)
    add("--queries", type=int, default=2_000)
    add("--batches", type=int, default=100, help="1,000-event batches per ingest run")
    add("--rounds", type=int, default=3, help="ingest runs per mode")
    add("--db", type=Path, help="keep the loaded database here and reuse it next time")
    add("--postgres", metavar="URL", help="only the ingest comparison, on this PostgreSQL")
    args = parser.parse_args(argv)
    if args.postgres:
        with tempfile.TemporaryDirectory() as tmp:
            rates, shares = asyncio.run(
                ingest_cost(Path(tmp), args.postgres, args.batches, args.rounds)
            )
        for mode, runs in rates.items():
            share = f", {median(shares[mode]):.2%} in touch_watched" if mode in shares else ""
            print(f"PostgreSQL batch ingest, {mode}: median {median(runs):,.0f} events/s{share}")
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="meterd-bench-entitlements-"))
    try:
        result = measure(
            workdir,
            events=args.events,
            customers=args.customers,
            queries=args.queries,
            batches=args.batches,
            rounds=args.rounds,
            db=None if args.db is None else args.db.resolve(),
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report = {
        "machine": machine.machine_info(),
        "figures": [figure.to_json() for figure in result.figures],
        "details": result.details,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2))
    for figure in result.figures:
        limit = figure.limit_value
        print(
            f"{figure.name}: {figure.value:,.2f} {figure.unit}"
            + ("" if limit is None else f" (limit: {figure.limit} {limit:,.2f})")
        )
    print(f"in-process entitlement(): {result.details['in_process']}")
    print(
        f"share of ingest time in touch_watched: {result.details['ingest_share_in_touch_watched']}"
    )
    print(f"figures: {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
