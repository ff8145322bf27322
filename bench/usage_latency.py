"""Latency of one customer's live open-period usage, next to a plain scan of raw events.

    .venv/bin/python -m bench.usage_latency [--events N] [--customers C] [--queries Q]
                                            [--db PATH] [--keep]

1. Load: N events straight through `SQLiteStore.ingest` (no HTTP), skewed over C
   customers, spread over two previous months and the current month up to now. A
   database passed with --db that already holds N events is reused. Completed periods
   are then closed in-process, as a running server would have done over time, so the
   server's scheduler has no backlog to work through while requests are timed.
2. HTTP: `meterd serve` as a subprocess on 127.0.0.1; Q sequential keep-alive requests
   of `GET /customers/{id}/usage?period=monthly`, in series: customers drawn uniformly,
   drawn by activity (the events' own skew), and the heaviest customer alone.
3. The same customers in-process (`customer_partials`, `usage_of`: no HTTP), and a
   breakdown of the heaviest customer's read (SQL fetch, row decoding, merging).
4. Baseline: the same numbers from a GROUP BY over the raw events, through the
   (customer_id, ts) index and, for a few queries, a full table scan (NOT INDEXED).
   Every queried customer's eventCounts must equal the raw-event counts.

Figures are printed with the machine they ran on and written to
bench/results/usage_latency.json. Every loop is bounded in count and in time.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import itertools
import json
import math
import pstats
import random
import secrets
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from tests.acceptance.server import MeterdProcess

from bench import machine
from meterd.aggregation import calendars_for
from meterd.closing import PeriodCloser
from meterd.config.loader import parse_config
from meterd.config.model import SystemConfig
from meterd.ingest import NewEvent
from meterd.periods import PeriodBounds
from meterd.rollup import Partial
from meterd.storage.sqlite import daily, rollups
from meterd.storage.sqlite.store import SQLiteStore, store_queries
from meterd.timeutil import datetime_to_ms, format_ms, now_ms
from meterd.usage import usage_of

RESULTS = Path(__file__).parent / "results" / "usage_latency.json"
SEED = 42
BATCH = 10_000
# Share of the events in the two months before the current one; the rest is this month.
PAST_SHARE = 0.35
PAST_MONTHS = 2
EVENT_TYPES = ("api.calls", "response.time.ms", "storage.bytes")
EVENT_TYPE_WEIGHTS = (0.7, 0.2, 0.1)
CONFIG = {
    "periods": ["hourly", "daily", "monthly"],
    "events": {
        "api.calls": {"op": "sum"},
        "storage.bytes": {"op": "max"},
        "response.time.ms": {"op": "avg"},
    },
    "timezone": "UTC",
}
# Request mix, repeated: two uniform, one by activity, one for the heaviest customer.
SERIES_CYCLE = ("uniform", "weighted", "uniform", "heaviest")
WARMUP_REQUESTS = 200
PING_REQUESTS = 200
SCAN_QUERIES = {"uniform": 200, "weighted": 100, "heaviest": 20}
SCAN_SERIES_BUDGET_S = 60.0
FULL_SCAN_QUERIES = 5
FULL_SCAN_BUDGET_S = 180.0
BREAKDOWN_REPS = 50
BREAKDOWN_BUDGET_S = 30.0
SERVER_START_TIMEOUT_S = 120.0
TARGET_P99_MS = 10.0
TARGET_EVENTS = 10_000_000


@dataclass(frozen=True)
class Options:
    events: int
    customers: int
    queries: int
    db: Path | None
    keep: bool
    load_budget_s: float
    query_budget_s: float
    close_budget_s: float


@dataclass
class Report:
    """What went differently from the plan (budgets hit, stale data): printed and saved."""

    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  note: {text}", flush=True)


# -- figures -----------------------------------------------------------------


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def summary(samples_ms: Sequence[float]) -> dict[str, float | int]:
    ordered = sorted(samples_ms)
    if not ordered:
        return {"n": 0}
    return {
        "n": len(ordered),
        "p50_ms": percentile(ordered, 50),
        "p90_ms": percentile(ordered, 90),
        "p99_ms": percentile(ordered, 99),
        "max_ms": ordered[-1],
    }


def machine_info() -> dict[str, Any]:
    return machine.machine_info()


def timed_ms(start_ns: int) -> float:
    return (time.perf_counter_ns() - start_ns) / 1e6


# -- the data ----------------------------------------------------------------


def customer_id(rank: int) -> str:
    return f"cust_{rank:05d}"


def zipf_cum_weights(customers: int) -> list[float]:
    """Customer of rank r gets weight 1/(r+1): the heaviest has twice the second's events."""
    return list(itertools.accumulate(1 / (rank + 1) for rank in range(customers)))


@dataclass(frozen=True)
class Timeline:
    """Where event number i falls: the first PAST_SHARE in earlier months, the rest this month."""

    start_ms: int
    month_start_ms: int
    end_ms: int
    total: int

    @classmethod
    def ending_now(cls, total: int) -> Timeline:
        now = datetime.now(UTC)
        month = datetime(now.year, now.month, 1, tzinfo=UTC)
        year, index = divmod(now.year * 12 + now.month - 1 - PAST_MONTHS, 12)
        start = datetime(year, index + 1, 1, tzinfo=UTC)
        return cls(datetime_to_ms(start), datetime_to_ms(month), now_ms(), total)

    def ts_of(self, index: int, jitter: float) -> int:
        past = int(self.total * PAST_SHARE)
        if index < past:
            span, offset, count = self.month_start_ms - self.start_ms, self.start_ms, past
        else:
            span, offset = self.end_ms - self.month_start_ms, self.month_start_ms
            index, count = index - past, self.total - past
        return offset + int((index + jitter) * span / count)


def make_batch(
    start: int, size: int, timeline: Timeline, cum_weights: list[float]
) -> list[NewEvent]:
    """Events start..start+size-1, the same ones whenever they are made."""
    rng = random.Random(SEED * 1_000_003 + start)
    ranks = rng.choices(range(len(cum_weights)), cum_weights=cum_weights, k=size)
    kinds = rng.choices(EVENT_TYPES, weights=EVENT_TYPE_WEIGHTS, k=size)
    batch = []
    for offset, (rank, kind) in enumerate(zip(ranks, kinds, strict=True)):
        index = start + offset
        ts = timeline.ts_of(index, rng.random())
        value: float
        if kind == "api.calls":
            value = rng.randint(1, 5)
        elif kind == "storage.bytes":
            value = rng.randint(0, 10**9)
        else:
            value = round(rng.uniform(5, 500), 1)
        batch.append(
            NewEvent(
                id=f"bench{index:011d}",
                event_type=kind,
                customer_id=customer_id(rank),
                value=value,
                metadata=None,
                ts_ms=ts,
                received_ms=ts + rng.randint(5, 500),
            )
        )
    return batch


def stored_events(path: Path) -> int:
    """Events in the database (seq only grows: no event is ever deleted)."""
    if not path.exists():
        return 0
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        try:
            return int(conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


def sidecar_path(db: Path) -> Path:
    return db.with_name(db.name + ".bench.json")


async def load(path: Path, opts: Options, config: SystemConfig, report: Report) -> dict[str, Any]:
    """Fill the database up to opts.events, then close every completed period."""
    sidecar = sidecar_path(path)
    have = stored_events(path)
    info: dict[str, Any] = json.loads(sidecar.read_text()) if sidecar.exists() else {}
    if have >= opts.events:
        print(f"load: reusing {path} ({have:,} events stored)", flush=True)
        if info.get("customers", opts.customers) != opts.customers:
            report.note(f"the database was loaded for {info['customers']:,} customers; using that")
    else:
        info = await _ingest(path, have, opts, report)
        info["customers"] = opts.customers
        sidecar.write_text(json.dumps(info, indent=2))
    info["closing"] = await _close_backlog(path, config, opts.close_budget_s, report)
    info["events_stored"] = stored_events(path)
    return info


async def _ingest(path: Path, have: int, opts: Options, report: Report) -> dict[str, Any]:
    timeline = Timeline.ending_now(opts.events)
    cum_weights = zipf_cum_weights(opts.customers)
    # The loaded data is the same whatever `synchronous` is; NORMAL only spares fsyncs.
    store = SQLiteStore(str(path), synchronous="NORMAL")
    await store.open()
    stored = 0
    began = time.perf_counter()
    last_print = began
    pending: asyncio.Future[list[bool]] | None = None
    try:
        for start in range(have, opts.events, BATCH):
            batch = make_batch(start, min(BATCH, opts.events - start), timeline, cum_weights)
            if pending is not None:
                stored += sum(await pending)
            # One batch in flight while the next is made: the writer thread works meanwhile.
            pending = asyncio.ensure_future(store.ingest(batch))
            elapsed = time.perf_counter() - began
            if time.perf_counter() - last_print > 30:
                last_print = time.perf_counter()
                print(
                    f"  load: {have + stored:,} events, {stored / elapsed:,.0f} events/s",
                    flush=True,
                )
            if elapsed > opts.load_budget_s:
                report.note(
                    f"load stopped after {elapsed:.0f} s (budget {opts.load_budget_s:.0f} s) at"
                    f" {have + stored:,} of {opts.events:,} events; rerun with --db to resume"
                )
                break
        if pending is not None:
            stored += sum(await pending)
    finally:
        await store.close()
    seconds = time.perf_counter() - began
    rate = stored / seconds if seconds else 0.0
    print(
        f"load: {stored:,} events in {seconds:.1f} s = {rate:,.0f} events/s"
        f" (SQLiteStore.ingest, batches of {BATCH:,}, synchronous=NORMAL)",
        flush=True,
    )
    return {
        "loaded_events": stored,
        "load_seconds": round(seconds, 3),
        "load_events_per_s": round(rate),
        "batch": BATCH,
        "synchronous": "NORMAL",
        "loaded_at": format_ms(now_ms()),
        "timeline": {
            "start": format_ms(timeline.start_ms),
            "month_start": format_ms(timeline.month_start_ms),
            "end": format_ms(timeline.end_ms),
        },
    }


async def _close_backlog(
    path: Path, config: SystemConfig, budget_s: float, report: Report
) -> dict[str, Any]:
    """Close completed periods, so the server's scheduler has nothing left to do."""
    store = SQLiteStore(str(path), synchronous="NORMAL")
    await store.open()
    began = time.perf_counter()
    try:
        closed = await asyncio.wait_for(
            PeriodCloser(store, config).close_completed(now_ms()), budget_s
        )
    except TimeoutError:
        report.note(
            f"closing completed periods exceeded {budget_s:.0f} s; the server will go on"
            " closing them while requests are timed"
        )
        closed = -1
    finally:
        await store.close()
    seconds = time.perf_counter() - began
    print(f"close: {closed:,} aggregation records closed in {seconds:.1f} s", flush=True)
    return {"records_closed": closed, "seconds": round(seconds, 3)}


# -- the requests ------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """Which customer each request asks for, and in which series it counts."""

    requests: list[tuple[str, str]]
    heaviest: str

    @classmethod
    def build(cls, queries: int, customers: int) -> Plan:
        rng = random.Random(SEED + 1)
        cum_weights = zipf_cum_weights(customers)
        heaviest = customer_id(0)
        requests = []
        for series in itertools.islice(itertools.cycle(SERIES_CYCLE), queries):
            if series == "uniform":
                rank = rng.randrange(customers)
            elif series == "weighted":
                rank = rng.choices(range(customers), cum_weights=cum_weights)[0]
            else:
                rank = 0
            requests.append((series, customer_id(rank)))
        return cls(requests, heaviest)

    def customers(self) -> set[str]:
        return {customer for _, customer in self.requests}


def by_series(samples: list[tuple[str, float]]) -> dict[str, dict[str, float | int]]:
    result = {"all": summary([ms for _, ms in samples])}
    for series in ("uniform", "weighted", "heaviest"):
        result[series] = summary([ms for name, ms in samples if name == series])
    return result


def http_phase(
    path: Path, workdir: Path, bounds: PeriodBounds, plan: Plan, opts: Options, report: Report
) -> tuple[dict[str, Any], dict[str, dict[str, int]]]:
    """Time the usage route over real HTTP; returns figures and each customer's eventCounts."""
    config_path = workdir / "systemconfig.json"
    config_path.write_text(json.dumps(CONFIG))
    key = "mk_bench_" + secrets.token_urlsafe(16)
    server = MeterdProcess(
        workdir,
        *("--db", f"sqlite:///{path}", "--config", str(config_path)),
        # Closed in-process already; a long interval keeps the scheduler out of the timing.
        *("--close-interval", "24h"),
        env={"METERD_API_KEYS": key, "METERD_DATABASE_URL": "", "METERD_CONFIG": ""},
    )
    counts: dict[str, dict[str, int]] = {}
    samples: list[tuple[str, float]] = []
    began = time.perf_counter()
    try:
        server.start(timeout=SERVER_START_TIMEOUT_S)
    except RuntimeError:
        server.stop()  # collects what it printed
        raise RuntimeError("meterd serve failed to start:\n" + server.read_output()) from None
    try:
        print(f"http: meterd serve up on {server.url} after {time.perf_counter() - began:.1f} s")
        with httpx.Client(base_url=server.url, headers={"x-apikey": key}, timeout=30) as client:
            ping = _time_pings(client)
            for _, customer in plan.requests[: min(WARMUP_REQUESTS, len(plan.requests))]:
                _usage(client, customer, bounds)
            began = time.perf_counter()
            for series, customer in plan.requests:
                if time.perf_counter() - began > opts.query_budget_s:
                    report.note(f"HTTP phase stopped at its {opts.query_budget_s:.0f} s budget")
                    break
                start = time.perf_counter_ns()
                response = client.get(f"/customers/{customer}/usage?period=monthly")
                elapsed = timed_ms(start)
                counts[customer] = _checked_counts(response, bounds)
                samples.append((series, elapsed))
    finally:
        server.stop()
    return {"usage": by_series(samples), "ping": summary(ping)}, counts


def _time_pings(client: httpx.Client) -> list[float]:
    """GET /ping: the floor of one keep-alive round trip through uvicorn and httpx."""
    samples = []
    for _ in range(PING_REQUESTS):
        start = time.perf_counter_ns()
        client.get("/ping").raise_for_status()
        samples.append(timed_ms(start))
    return samples


def _usage(client: httpx.Client, customer: str, bounds: PeriodBounds) -> dict[str, int]:
    return _checked_counts(client.get(f"/customers/{customer}/usage?period=monthly"), bounds)


def _checked_counts(response: httpx.Response, bounds: PeriodBounds) -> dict[str, int]:
    response.raise_for_status()
    body = response.json()
    if body["periodKey"] != bounds.key or body["status"] != "open":
        raise RuntimeError(f"expected the open period {bounds.key}, got {body}")
    counts: dict[str, int] = body["eventCounts"]
    return counts


# -- in-process reads --------------------------------------------------------


async def _timed_loop(
    plan: Plan, budget_s: float, call: Callable[[str], Awaitable[object]]
) -> list[tuple[str, float]]:
    samples = []
    began = time.perf_counter()
    for series, customer in plan.requests:
        if time.perf_counter() - began > budget_s:
            break
        start = time.perf_counter_ns()
        await call(customer)
        samples.append((series, timed_ms(start)))
    return samples


async def in_process_phase(
    path: Path, config: SystemConfig, bounds: PeriodBounds, plan: Plan, opts: Options
) -> dict[str, Any]:
    """The same reads without HTTP: the store's rollup read, and the whole usage answer."""
    store = SQLiteStore(str(path))
    await store.open()
    closer = PeriodCloser(store, config)
    try:
        for _, customer in plan.requests[:WARMUP_REQUESTS]:
            await store.customer_partials(customer, bounds)
        partials = await _timed_loop(
            plan, opts.query_budget_s, lambda c: store.customer_partials(c, bounds)
        )
        usage = await _timed_loop(
            plan,
            opts.query_budget_s,
            lambda c: usage_of(
                store,
                ops=closer.ops,
                customer_id=c,
                period="monthly",
                bounds=bounds,
                now_ms=now_ms(),
            ),
        )
    finally:
        await store.close()
    return {"customer_partials": by_series(partials), "usage_of": by_series(usage)}


def read_connection(path: Path) -> sqlite3.Connection:
    """A read-only connection set up like meterd's readers."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    conn.execute("PRAGMA cache_size=-65536")
    conn.execute("PRAGMA temp_store=MEMORY")
    return conn


def merged_partials(decoded: Iterable[tuple[str, str, Partial]]) -> dict[str, Partial]:
    """What `customer_partials` does with its decoded rows, for timing its steps one by one."""
    merged: dict[str, Partial] = {}
    for _, event_type, partial in decoded:
        known = merged.get(event_type)
        merged[event_type] = partial if known is None else known.merge(partial)
    return merged


def breakdown_phase(path: Path, bounds: PeriodBounds, customer: str) -> dict[str, Any]:
    """Where one read of `customer`'s period goes: SQL fetch, row decoding, merging."""
    queries = store_queries()
    sql = queries["customer_rollups"]
    grouped = queries["customer_span"] + (
        " SELECT event_type, sum(count), min(minimum), max(maximum) FROM span GROUP BY event_type"
    )
    fetch, decode, merge, in_sql = [], [], [], []
    rows: list[tuple[Any, ...]] = []
    with read_connection(path) as conn:
        # The rows meterd reads: compacted whole days from daily_rollups, the edges in buckets.
        params = daily.span_params(customer, bounds, daily.days_until(conn, queries))
        conn.execute(sql, params).fetchall()
        began = time.perf_counter()
        for _ in range(BREAKDOWN_REPS):
            if time.perf_counter() - began > BREAKDOWN_BUDGET_S:
                break
            start = time.perf_counter_ns()
            rows = conn.execute(sql, params).fetchall()
            fetch.append(timed_ms(start))
            start = time.perf_counter_ns()
            decoded = list(rollups.partial_rows(rows))
            decode.append(timed_ms(start))
            start = time.perf_counter_ns()
            merged_partials(decoded)
            merge.append(timed_ms(start))
            start = time.perf_counter_ns()
            conn.execute(grouped, params).fetchall()
            in_sql.append(timed_ms(start))
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(10):
        merged_partials(rollups.partial_rows(rows))
    profile.disable()
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(8)
    return {
        "customer": customer,
        "rollup_rows": len(rows),
        "sql_fetch": summary(fetch),
        "decode_rows": summary(decode),
        "merge_partials": summary(merge),
        "group_by_in_sqlite": summary(in_sql),
        "profile_10_folds": _trim_profile(text.getvalue()),
    }


def _trim_profile(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    return [lines[0].strip(), *lines[start:]] if lines else []


# -- the baseline: a scan of raw events ---------------------------------------

SCAN_SQL = (
    "SELECT event_type, count(*), sum(value), min(value), max(value) FROM events {hint}"
    "WHERE customer_id = ? AND ts >= ? AND ts < ? GROUP BY event_type"
)


def scan_phase(path: Path, bounds: PeriodBounds, plan: Plan, report: Report) -> dict[str, Any]:
    """GROUP BY over raw events, per customer: by the (customer_id, ts) index, then NOT INDEXED."""
    indexed = SCAN_SQL.format(hint="")
    full = SCAN_SQL.format(hint="NOT INDEXED ")
    figures: dict[str, Any] = {}
    with read_connection(path) as conn:
        plan_rows = conn.execute("EXPLAIN QUERY PLAN " + indexed, ("x", 0, 0)).fetchall()
        figures["indexed_plan"] = [row[-1] for row in plan_rows]
        for series, limit in SCAN_QUERIES.items():
            customers = [c for name, c in plan.requests if name == series][:limit]
            figures[f"indexed_{series}"] = summary(
                _time_scans(conn, indexed, customers, bounds, SCAN_SERIES_BUDGET_S)
            )
        customers = [customer for _, customer in plan.requests[:FULL_SCAN_QUERIES]]
        samples = _time_scans(conn, full, customers, bounds, FULL_SCAN_BUDGET_S)
        if len(samples) < len(customers):
            report.note(f"full scans stopped at {len(samples)} by their time budget")
        figures["full_scan"] = summary(samples)
    return figures


def _time_scans(
    conn: sqlite3.Connection,
    sql: str,
    customers: list[str],
    bounds: PeriodBounds,
    budget_s: float,
) -> list[float]:
    samples = []
    began = time.perf_counter()
    for customer in customers:
        if time.perf_counter() - began > budget_s:
            break
        start = time.perf_counter_ns()
        conn.execute(sql, (customer, bounds.start_ms, bounds.end_ms)).fetchall()
        samples.append(timed_ms(start))
    return samples


def raw_counts(path: Path, bounds: PeriodBounds, customers: set[str]) -> dict[str, dict[str, int]]:
    """Per customer and event type, the events in `bounds`, counted from the raw events."""
    counts: dict[str, dict[str, int]] = {}
    sql = (
        "SELECT customer_id, event_type, count(*) FROM events"
        " WHERE ts >= ? AND ts < ? GROUP BY customer_id, event_type"
    )
    with read_connection(path) as conn:
        for customer, event_type, count in conn.execute(sql, (bounds.start_ms, bounds.end_ms)):
            if customer in customers:
                counts.setdefault(customer, {})[event_type] = count
    return counts


def mismatches(
    meterd: dict[str, dict[str, int]], raw: dict[str, dict[str, int]]
) -> list[dict[str, Any]]:
    return [
        {"customer": customer, "meterd": counts, "raw_events": raw.get(customer, {})}
        for customer, counts in sorted(meterd.items())
        if counts != raw.get(customer, {})
    ]


# -- the report --------------------------------------------------------------


def ratio(a: dict[str, Any], b: dict[str, Any], key: str = "p50_ms") -> float | None:
    if not a.get(key) or not b.get(key):
        return None
    return round(float(a[key]) / float(b[key]), 2)


def ratios(figures: dict[str, Any]) -> dict[str, float | None]:
    http, scan = figures["http"]["usage"], figures["scan"]
    return {
        "scan_p50/http_p50 uniform": ratio(scan["indexed_uniform"], http["uniform"]),
        "scan_p99/http_p99 uniform": ratio(scan["indexed_uniform"], http["uniform"], "p99_ms"),
        "scan_p50/http_p50 weighted": ratio(scan["indexed_weighted"], http["weighted"]),
        "scan_p50/http_p50 heaviest": ratio(scan["indexed_heaviest"], http["heaviest"]),
        "scan_p99/http_p99 heaviest": ratio(scan["indexed_heaviest"], http["heaviest"], "p99_ms"),
        "full_scan_p50/http_p50 all": ratio(scan["full_scan"], http["all"]),
        "http_p50/usage_of_p50 heaviest": ratio(
            http["heaviest"], figures["in_process"]["usage_of"]["heaviest"]
        ),
    }


def target(figures: dict[str, Any], events: int) -> dict[str, Any]:
    """DESIGN.md section 5: one customer's open-period usage, 10M events stored, p99 <= 10 ms."""
    usage = figures["http"]["usage"]
    result: dict[str, Any] = {
        "p99_ms_at_most": TARGET_P99_MS,
        "at_events": TARGET_EVENTS,
        "applies": events >= TARGET_EVENTS,
    }
    for series in ("all", "heaviest"):
        p99 = usage[series].get("p99_ms")
        result[f"{series}_p99_ms"] = p99
        result[f"{series}_over_by_ms"] = None if p99 is None else round(p99 - TARGET_P99_MS, 3)
    return result


def rows_of(figures: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    http, local, scan = figures["http"], figures["in_process"], figures["scan"]
    for series in ("all", "uniform", "weighted", "heaviest"):
        yield f"HTTP usage, {series}", http["usage"][series]
    yield "HTTP GET /ping (floor)", http["ping"]
    for name in ("usage_of", "customer_partials"):
        for series in ("all", "uniform", "heaviest"):
            yield f"in-process {name}, {series}", local[name][series]
    for step in ("sql_fetch", "decode_rows", "merge_partials", "group_by_in_sqlite"):
        yield f"heaviest read: {step}", figures["breakdown"][step]
    for series in ("uniform", "weighted", "heaviest"):
        yield f"raw scan (index), {series}", scan[f"indexed_{series}"]
    yield "raw scan NOT INDEXED, mixed", scan["full_scan"]


def print_report(results: dict[str, Any]) -> None:
    m, p, figures = results["machine"], results["data"], results["figures"]
    print()
    print("meterd usage latency: GET /customers/{id}/usage?period=monthly")
    print(
        f"machine: {m['cores']} cores, {m['cpu_model']}, Python {m['python']},"
        f" SQLite {m['sqlite']}, {m['platform']}; shared: load average (1/5/15 min)"
        f" {m['loadavg_1_5_15']} at start, {m['loadavg_1_5_15_at_end']} at end"
    )
    print(
        f"data: {p['events_stored']:,} events, {p['customers']:,} customers;"
        f" period monthly {p['period_key']} (open);"
        f" heaviest {p['heaviest']}: {p['heaviest_period_events']:,} events,"
        f" {figures['breakdown']['rollup_rows']:,} rollup rows in the period"
    )
    code = results["code"]
    git = (
        f", git HEAD {code['git_commit']}, {len(code['uncommitted'])} changed paths"
        if "git_commit" in code
        else ""
    )
    print(f"code: meterd from {code['meterd_source']}{git}")
    load = p["load"]
    if "load_events_per_s" in load:
        print(
            f"load: {load['loaded_events']:,} events in {load['load_seconds']:,.1f} s ="
            f" {load['load_events_per_s']:,} events/s (SQLiteStore.ingest, batches of"
            f" {load['batch']:,}, synchronous={load['synchronous']}) at {load['loaded_at']}"
        )
    close = load["closing"]
    print(f"close: {close['records_closed']:,} records closed in {close['seconds']:,.1f} s")
    print()
    print(f"{'':38} {'n':>6} {'p50':>9} {'p90':>9} {'p99':>9} {'max':>9}  (ms)")
    for name, s in rows_of(figures):
        if not s.get("n"):
            print(f"{name:38} {0:>6}")
            continue
        print(
            f"{name:38} {s['n']:>6} {s['p50_ms']:>9.3f} {s['p90_ms']:>9.3f}"
            f" {s['p99_ms']:>9.3f} {s['max_ms']:>9.3f}"
        )
    print()
    for name, value in results["ratios"].items():
        print(f"ratio {name:36} {'n/a' if value is None else f'{value:,.2f}x'}")
    print()
    print("scan plan: " + "; ".join(figures["scan"]["indexed_plan"]))
    print("profile of 10 folds of the heaviest customer's rows (sorted by own time):")
    for line in figures["breakdown"]["profile_10_folds"]:
        print("  " + line)
    goal = results["target"]
    scope = "" if goal["applies"] else f" (applies at {goal['at_events']:,} events, not here)"
    for series in ("all", "heaviest"):
        over = goal[f"{series}_over_by_ms"]
        verdict = "met" if over is not None and over <= 0 else f"MISSED by {over} ms"
        print(
            f"target: HTTP p99 <= {goal['p99_ms_at_most']:g} ms, {series}:"
            f" {goal[f'{series}_p99_ms']:.3f} ms, {verdict}{scope}"
        )
    check = results["check"]
    verdict = "OK" if not check["mismatches"] else f"{len(check['mismatches'])} MISMATCHES"
    print(
        f"check: eventCounts of {check['customers']:,} queried customers against raw events:"
        f" {verdict}"
    )
    for note in results["notes"]:
        print(f"note: {note}")


# -- main --------------------------------------------------------------------


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.usage_latency",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=2_000)
    parser.add_argument("--db", type=Path, default=None, help="reuse or create this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary database")
    parser.add_argument("--load-budget", type=float, default=1800.0, help="seconds")
    parser.add_argument("--close-budget", type=float, default=1800.0, help="seconds")
    parser.add_argument("--query-budget", type=float, default=600.0, help="seconds per phase")
    args = parser.parse_args(argv)
    if args.events < 1 or args.customers < 1 or args.queries < len(SERIES_CYCLE):
        parser.error("--events and --customers must be positive, --queries at least 4")
    return Options(
        events=args.events,
        customers=args.customers,
        queries=args.queries,
        db=None if args.db is None else args.db.resolve(),
        keep=args.keep,
        load_budget_s=args.load_budget,
        query_budget_s=args.query_budget,
        close_budget_s=args.close_budget,
    )


def run(opts: Options, workdir: Path, path: Path) -> int:
    report = Report()
    machine_at_start = machine_info()
    config = parse_config(json.dumps(CONFIG).encode(), "<bench config>")
    load_info = asyncio.run(load(path, opts, config, report))
    customers = int(load_info.get("customers", opts.customers))
    bounds = calendars_for(config)["monthly"].bounds_at(now_ms())
    plan = Plan.build(opts.queries, customers)

    figures: dict[str, Any] = {}
    figures["http"], counts = http_phase(path, workdir, bounds, plan, opts, report)
    print("in-process reads ...", flush=True)
    figures["in_process"] = asyncio.run(in_process_phase(path, config, bounds, plan, opts))
    figures["breakdown"] = breakdown_phase(path, bounds, plan.heaviest)
    print("raw-event scans ...", flush=True)
    figures["scan"] = scan_phase(path, bounds, plan, report)
    if not counts.get(plan.heaviest):
        report.note(
            f"{plan.heaviest} has no events in {bounds.key}: the database was loaded in an"
            " earlier month, so these figures are not for a well-filled open period; reload it"
        )
    raw = raw_counts(path, bounds, set(counts))
    wrong = mismatches(counts, raw)
    results: dict[str, Any] = {
        "benchmark": "usage_latency",
        "ran_at": format_ms(now_ms()),
        "machine": {**machine_at_start, "loadavg_1_5_15_at_end": machine.load_average()},
        "code": machine.code_version(),
        "parameters": {
            "events": opts.events,
            "customers": opts.customers,
            "queries": opts.queries,
            "db": str(path),
            "series_cycle": SERIES_CYCLE,
            "scan_queries": SCAN_QUERIES,
            "full_scan_queries": FULL_SCAN_QUERIES,
        },
        "data": {
            "events_stored": load_info["events_stored"],
            "customers": customers,
            "period_key": bounds.key,
            "period_start": format_ms(bounds.start_ms),
            "heaviest": plan.heaviest,
            "heaviest_period_events": sum(counts.get(plan.heaviest, {}).values()),
            "load": {k: v for k, v in load_info.items() if k != "customers"},
        },
        "figures": figures,
        "check": {"customers": len(counts), "mismatches": wrong},
        "notes": report.notes,
    }
    results["ratios"] = ratios(figures)
    results["target"] = target(figures, load_info["events_stored"])
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print_report(results)
    print(f"results: {RESULTS}")
    if wrong:
        print(f"!!! MISMATCH: {len(wrong)} customers' eventCounts differ from the raw events:")
        for item in wrong[:10]:
            print(f"!!!   {item}")
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_options(argv)
    workdir = Path(tempfile.mkdtemp(prefix="meterd-bench-"))
    path = opts.db or workdir / "usage.db"
    try:
        return run(opts, workdir, path)
    finally:
        if opts.keep and opts.db is None:
            print(f"kept database: {path}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
