"""Batch ingest throughput on PostgreSQL: meterd's HTTP API next to a raw COPY of the same rows.

    .venv/bin/python -m bench.postgres_ingest [--events N] [--batch 1000] [--clients K]
                                              [--url URL] [--runs 3] [--workers 1,2]
                                              [--timestamps month|hour]

1. Data: N events (unique ids, ~10,000 customers, three event types, ISO-8601
   timestamps spread over the current month up to now, or with `--timestamps hour`
   over the last hour, where a live stream's events fall and keep updating the same
   rollup rows; small metadata on half of them), pre-encoded as JSON bodies of
   `--batch` events, plus the same rows as COPY tuples and as `NewEvent` lists.
2. Figures, each on a fresh schema `bench_<random>` (dropped afterwards), interleaved
   and repeated `--runs` times so that a busy neighbour hurts all of them alike:
   - raw COPY: `COPY events FROM STDIN` of the same rows into meterd's own schema
     (events table with its indexes), one transaction per batch, from one connection
     (the baseline of the ratios) and from K connections;
   - meterd's storage layer in-process (`PostgresStore.ingest`, K asyncio tasks):
     insert, dedup by id and rollups, without HTTP and JSON;
   - `meterd serve --workers W` as a subprocess, loaded by K client processes with
     one keep-alive httpx client each, posting pre-encoded bodies to /usagebatch.
     A 201 means committed (`synchronous_commit` is printed). The wall time runs
     from the first send to the last 201.
3. Checks: every run stores exactly N events (and, through meterd, rollups whose
   counts add up to N); every HTTP answer is a 201 that stored its whole batch.

Figures are medians of the runs, with the CPU each party used (from /proc: the load
generator, meterd, this run's PostgreSQL backends, and the neighbours on this shared
machine) so that a missed target shows where the time went. Results go to
bench/results/postgres_ingest.json. Every loop is bounded in count and in time;
traffic goes only to 127.0.0.1 and to the PostgreSQL of --url.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import msgspec
import psycopg
from tests.acceptance.server import free_port

from bench import clients, machine
from bench.events import EVENT_TYPES, METADATA, batch_item, sample_value
from meterd.ingest import NewEvent
from meterd.rollup import exact
from meterd.settings import ServerSettings
from meterd.storage.postgres.store import PostgresStore
from meterd.timeutil import format_ms, ms_to_datetime, now_ms

# The files whose uncommitted changes the results name.
INGEST_PATH = (
    "src/meterd/storage/postgres",
    "src/meterd/ingest.py",
    "src/meterd/http/ingest.py",
    "src/meterd/rollup.py",
)
RESULTS = Path(__file__).parent / "results" / "postgres_ingest.json"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
SEED = 7
CUSTOMERS = 10_000
CONFIG: dict[str, Any] = {
    "periods": ["hourly", "daily", "monthly"],
    "events": {
        "api.calls": {"op": "sum"},
        "storage.bytes": {"op": "max"},
        "response.time.ms": {"op": "avg"},
    },
    "timezone": "UTC",
}
COPY_SQL = (
    "COPY events (seq, id, event_type, customer_id, value, metadata, ts, received_at) FROM STDIN"
)
TARGET_EVENTS_PER_S = 40_000
HOUR_MS = 3_600_000
SERVER_START_TIMEOUT_S = 60.0
# Leaves the server's scheduler idle while it is timed: this measures ingest, not closing.
CLOSE_INTERVAL = "1h"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
COPY_FIGURE = "raw COPY"
BASELINE_FIGURE = f"{COPY_FIGURE}, 1 connection"
STORE_FIGURE = "PostgresStore.ingest"


@dataclass(frozen=True)
class Options:
    events: int
    batch: int
    clients: int
    url: str
    runs: int
    workers: tuple[int, ...]
    budget_s: float
    timestamps: str = "month"


@dataclass(frozen=True)
class Data:
    """The same events three ways: JSON bodies, COPY rows, `NewEvent` lists."""

    bodies: list[bytes]
    copy_batches: list[list[tuple[Any, ...]]]
    event_batches: list[list[NewEvent]]
    first_ts_ms: int
    last_ts_ms: int


@dataclass
class Run:
    figure: str
    events: int
    seconds: float
    cpu: dict[str, float]
    checks: dict[str, Any]
    problems: list[str]

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


# -- machine and CPU accounting ------------------------------------------------


def machine_info(url: str) -> dict[str, Any]:
    settings = ("server_version", "synchronous_commit", "fsync", "wal_sync_method")
    with psycopg.connect(url, autocommit=True) as conn:
        pg = {name: _show(conn, name) for name in (*settings, "shared_buffers", "max_wal_size")}
    return {**machine.machine_info(), "psycopg": psycopg.__version__, "postgresql": pg}


def _show(conn: psycopg.Connection[tuple[Any, ...]], name: str) -> str:
    row = conn.execute(f"SHOW {name}".encode()).fetchone()
    return str(row[0]) if row else "?"


def _process_cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def _process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (uvicorn's worker processes), bounded in size."""
    found: list[int] = []
    todo = [pid]
    while todo and len(found) < 64:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo.extend(int(c) for c in (task / "children").read_text().split())
            except OSError:
                continue
    return found


def _postgres_pids(schema: Schema) -> list[int]:
    """This run's backends and PostgreSQL's own processes (WAL writer...), no other sessions."""
    with psycopg.connect(schema.url, autocommit=True, application_name="bench-observer") as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE application_name = %s OR backend_type <> 'client backend'",
            (schema.name,),
        ).fetchall()
    return [int(row[0]) for row in rows]


@dataclass(frozen=True)
class CpuSample:
    """Cumulative CPU seconds of the machine and of each party's processes, by pid."""

    at: float
    machine_busy: float
    parties: dict[str, dict[int, float]]

    @classmethod
    def take(cls, schema: Schema, roots: dict[str, list[int]]) -> CpuSample:
        """`roots`: for each party, the processes whose trees it is (PostgreSQL is added)."""
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle, iowait
        busy = (sum(fields[:8]) - idle) / CLOCK_TICKS  # guest time is inside user already
        trees = {
            party: [p for root in pids for p in _process_tree(root)]
            for party, pids in roots.items()
        }
        trees["postgres"] = _postgres_pids(schema)
        parties = {
            party: {pid: _process_cpu_s(pid) for pid in pids} for party, pids in trees.items()
        }
        return cls(time.monotonic(), busy, parties)

    def since(self, start: CpuSample) -> dict[str, float]:
        """CPU seconds used in between; a process that started in between counts whole."""
        used = {
            "capacity_s": (self.at - start.at) * (os.cpu_count() or 1),
            "machine_busy_s": self.machine_busy - start.machine_busy,
        }
        for party, now in self.parties.items():
            before = start.parties.get(party, {})
            used[f"{party}_s"] = sum(cpu - before.get(pid, 0.0) for pid, cpu in now.items())
        ours = sum(
            used.get(f"{party}_s", 0.0) for party in ("load_generator", "meterd", "postgres")
        )
        used["others_s"] = used["machine_busy_s"] - ours
        return used


# -- the data --------------------------------------------------------------------


def make_data(events: int, batch: int, now: int, timestamps: str = "month") -> Data:
    rng = random.Random(SEED)
    moment = ms_to_datetime(now)
    first_ts = int(datetime(moment.year, moment.month, 1, tzinfo=UTC).timestamp() * 1000)
    if timestamps == "hour":
        first_ts = max(first_ts, now - HOUR_MS)
    last_ts = max(first_ts, now - 1_000)
    encoder = msgspec.json.Encoder()
    received = ms_to_datetime(now)
    bodies, copy_batches, event_batches = [], [], []
    for start in range(0, events, batch):
        items, rows, news = [], [], []
        for index in range(start, min(start + batch, events)):
            event_type = rng.choices(EVENT_TYPES, weights=(0.7, 0.1, 0.2))[0]
            value = sample_value(rng, event_type)
            customer = f"cust_{rng.randrange(CUSTOMERS):05d}"
            ts = rng.randint(first_ts, last_ts)
            metadata = METADATA if index % 2 == 0 else None
            event_id = f"evt_{SEED}_{index:09d}"
            items.append(batch_item(event_id, event_type, customer, value, ts, metadata))
            text_metadata = None if metadata is None else metadata.decode()
            rows.append(
                (
                    index + 1,
                    event_id,
                    event_type,
                    customer,
                    Decimal(exact(value)),
                    text_metadata,
                    ms_to_datetime(ts),
                    received,
                )
            )
            news.append(NewEvent(event_id, event_type, customer, value, metadata, ts, now))
        bodies.append(encoder.encode(items))
        copy_batches.append(rows)
        event_batches.append(news)
    return Data(bodies, copy_batches, event_batches, first_ts, last_ts)


# -- schemas -----------------------------------------------------------------------


@dataclass(frozen=True)
class Schema:
    name: str
    url: str


@contextmanager
def fresh_schema(base_url: str) -> Iterator[Schema]:
    """A new schema `bench_<random>`, dropped afterwards, and a URL whose tables live there.

    Its connections carry the schema's name as application_name, to tell their CPU apart.
    """
    name = f"bench_{secrets.token_hex(6)}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}".encode())
    separator = "&" if "?" in base_url else "?"
    options = quote(f"-csearch_path={name}")
    try:
        yield Schema(name, f"{base_url}{separator}options={options}&application_name={name}")
    finally:
        with psycopg.connect(base_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {name} CASCADE".encode())


async def _create_meterd_schema(url: str) -> None:
    store = PostgresStore(url)
    await store.open()  # runs the migrations
    await store.close()


def stored_counts(url: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM events),"
            " (SELECT count(*) FROM rollups), (SELECT coalesce(sum(count), 0) FROM rollups)"
        ).fetchone()
    assert row is not None
    return {"events": int(row[0]), "rollup_rows": int(row[1]), "rollup_count_sum": int(row[2])}


def _check_counts(run: Run, url: str, expected: int, *, rollups: bool) -> None:
    counts = stored_counts(url)
    run.checks.update(counts)
    if counts["events"] != expected:
        run.problems.append(f"{counts['events']:,} events stored, {expected:,} expected")
    if rollups and counts["rollup_count_sum"] != expected:
        run.problems.append(
            f"rollup counts add up to {counts['rollup_count_sum']:,}, {expected:,} expected"
        )


# -- raw COPY and the in-process store ---------------------------------------------


def copy_run(base_url: str, data: Data, opts: Options, connections: int) -> Run:
    """COPY the rows into meterd's events table, one transaction per batch.

    With several connections, each copies its share of the batches from its own thread
    (psycopg leaves the GIL while it waits for the server).
    """
    with fresh_schema(base_url) as schema:
        asyncio.run(_create_meterd_schema(schema.url))
        me = {"load_generator": [os.getpid()]}
        conns = [psycopg.connect(schema.url, autocommit=True) for _ in range(connections)]
        try:
            cpu = CpuSample.take(schema, me)
            start = time.monotonic()
            deadline = start + opts.budget_s
            with ThreadPoolExecutor(connections) as pool:
                shares = [data.copy_batches[i::connections] for i in range(connections)]
                copied = sum(pool.map(_copy_share, conns, shares, [deadline] * connections))
            seconds = time.monotonic() - start
            used = CpuSample.take(schema, me).since(cpu)
        finally:
            for conn in conns:
                conn.close()
        figure = f"{COPY_FIGURE}, {connections} connection{'s' if connections > 1 else ''}"
        run = Run(figure, copied, seconds, used, {}, [])
        _check_counts(run, schema.url, opts.events, rollups=False)
    return run


def _copy_share(
    conn: psycopg.Connection[tuple[Any, ...]], batches: list[list[tuple[Any, ...]]], deadline: float
) -> int:
    copied = 0
    for rows in batches:
        if time.monotonic() > deadline:
            break
        with conn.transaction(), conn.cursor() as cursor, cursor.copy(COPY_SQL) as copy:
            for row in rows:
                copy.write_row(row)
        copied += len(rows)
    return copied


def store_run(base_url: str, data: Data, opts: Options) -> Run:
    """`PostgresStore.ingest` from K concurrent tasks: meterd's storage cost without HTTP."""
    with fresh_schema(base_url) as schema:
        run = asyncio.run(_store_ingest(schema, data, opts))
        _check_counts(run, schema.url, opts.events, rollups=True)
    return run


async def _store_ingest(schema: Schema, data: Data, opts: Options) -> Run:
    store = PostgresStore(schema.url)
    await store.open()
    me = {"meterd": [os.getpid()]}
    try:
        cpu = CpuSample.take(schema, me)
        start = time.monotonic()
        deadline = start + opts.budget_s

        async def ingest_share(share: int) -> tuple[int, int]:
            events = stored = 0
            for batch in data.event_batches[share :: opts.clients]:
                if time.monotonic() > deadline:
                    break
                stored += sum(await store.ingest(batch))
                events += len(batch)
            return events, stored

        results = await asyncio.gather(*(ingest_share(i) for i in range(opts.clients)))
        seconds = time.monotonic() - start
        used = CpuSample.take(schema, me).since(cpu)
        transactions = store.ingest_transactions
    finally:
        await store.close()
    events = sum(sent for sent, _ in results)
    stored = sum(kept for _, kept in results)
    figure = f"{STORE_FIGURE}, {opts.clients} tasks"
    run = Run(figure, events, seconds, used, {"transactions": transactions}, [])
    if stored != opts.events:
        run.problems.append(f"ingest reported {stored:,} stored, {opts.events:,} expected")
    return run


# -- meterd serve and its clients ------------------------------------------------------


@dataclass(frozen=True)
class Server:
    base_url: str
    pid: int
    log: Path


@contextmanager
def meterd_server(
    db_url: str, workers: int, workdir: Path, api_key: str, max_body: int
) -> Iterator[Server]:
    """`meterd serve` on 127.0.0.1 with output to a file (no pipe to fill); always stopped."""
    port = free_port()
    log = workdir / f"meterd-{port}.log"
    command = [
        sys.executable,
        "-m",
        "meterd",
        "serve",
        "--db",
        db_url,
        "--config",
        str(workdir / "systemconfig.json"),
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--close-interval",
        CLOSE_INTERVAL,
        "--max-body-bytes",
        str(max_body),
    ]
    env = {**os.environ, "METERD_API_KEYS": api_key}
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            server = Server(f"http://127.0.0.1:{port}", process.pid, log)
            _wait_ready(process, server, workers)
            yield server
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)


def _wait_ready(process: subprocess.Popen[bytes], server: Server, workers: int) -> None:
    """Until /ping answers and every worker has finished its startup."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("meterd exited:\n" + server.log.read_text(errors="replace"))
        started = server.log.read_text(errors="replace").count("Application startup complete")
        try:
            if started >= workers and httpx.get(server.base_url + "/ping", timeout=2).is_success:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("meterd did not start:\n" + server.log.read_text(errors="replace"))


def http_run(base_url: str, data: Data, opts: Options, workers: int, workdir: Path) -> Run:
    """`meterd serve --workers W` on a fresh schema, loaded by K client processes."""
    api_key = "mk_bench_" + secrets.token_hex(16)
    max_body = max(ServerSettings.max_body_bytes, 2 * max(len(b) for b in data.bodies))
    figure = f"HTTP /usagebatch, {workers} worker{'s' if workers > 1 else ''}"
    headers = {"x-apikey": api_key, "content-type": "application/json"}
    shares = [data.bodies[share :: opts.clients] for share in range(opts.clients)]
    with fresh_schema(base_url) as schema:
        with meterd_server(schema.url, workers, workdir, api_key, max_body) as server:
            parties = {"meterd": [server.pid]}
            samples: list[CpuSample] = []

            def released(pids: list[int]) -> None:
                parties["load_generator"] = pids
                samples.append(CpuSample.take(schema, parties))

            load = clients.run_clients(
                server.base_url,
                "/usagebatch",
                headers,
                shares,
                opts.budget_s,
                on_release=released,
                on_done=lambda: samples.append(CpuSample.take(schema, parties)),
            )
            used = samples[1].since(samples[0])
        run = _http_result(figure, load, used, opts)
        _check_counts(run, schema.url, opts.events, rollups=True)
    return run


def _http_result(
    figure: str, load: clients.LoadResult, used: dict[str, float], opts: Options
) -> Run:
    statuses = load.statuses
    checks: dict[str, Any] = {
        "statuses": {str(k): v for k, v in statuses.items()},
        "stored": load.stored,
        "client_start_spread_s": round(
            max(c.first_send for c in load.clients) - min(c.first_send for c in load.clients), 4
        ),
    }
    run = Run(figure, load.stored, load.seconds, used, checks, [])
    if set(statuses) != {201} or statuses[201] != len(range(0, opts.events, opts.batch)):
        run.problems.append(f"answers by status: {checks['statuses']}")
    if load.stored != opts.events:
        run.problems.append(f"201s stored {load.stored:,} events, {opts.events:,} expected")
    for client in load.clients:
        run.problems.extend(client.errors[:3])
    return run


# -- figures and the report --------------------------------------------------------

CPU_PARTS = ("load_generator", "meterd", "postgres", "others")


def summarise(runs: list[Run]) -> dict[str, dict[str, Any]]:
    """Per figure: median events/s, its ratio to raw COPY's median, median CPU per event."""
    by_figure: dict[str, list[Run]] = {}
    for run in runs:
        by_figure.setdefault(run.figure, []).append(run)
    copy_rates = [run.events_per_s for run in by_figure.get(BASELINE_FIGURE, [])]
    copy = statistics.median(copy_rates) if copy_rates else 0.0
    summary = {}
    for figure, group in by_figure.items():
        median = statistics.median(run.events_per_s for run in group)
        summary[figure] = {
            "events_per_s_median": round(median),
            "events_per_s_runs": [round(run.events_per_s) for run in group],
            "seconds_runs": [round(run.seconds, 3) for run in group],
            "ratio_to_raw_copy": round(median / copy, 3) if copy else None,
            "cpu_ms_per_1000_events": {
                part: round(statistics.median(_cpu_ms_per_1000(run, part) for run in group), 1)
                for part in CPU_PARTS
            },
            "machine_busy_share": round(
                statistics.median(
                    run.cpu["machine_busy_s"] / max(run.cpu["capacity_s"], 1e-9) for run in group
                ),
                3,
            ),
        }
    return summary


def _cpu_ms_per_1000(run: Run, part: str) -> float:
    return 1e6 * run.cpu.get(f"{part}_s", 0.0) / max(run.events, 1)


def target_verdict(summary: dict[str, dict[str, Any]]) -> dict[str, Any]:
    http = {k: v for k, v in summary.items() if k.startswith("HTTP")}
    if not http:
        return {"target_events_per_s": TARGET_EVENTS_PER_S, "best": None}
    best = max(http, key=lambda k: http[k]["events_per_s_median"])
    rate = http[best]["events_per_s_median"]
    return {
        "target_events_per_s": TARGET_EVENTS_PER_S,
        "best": best,
        "best_events_per_s": rate,
        "met": rate >= TARGET_EVENTS_PER_S,
        "short_by_events_per_s": max(0, TARGET_EVENTS_PER_S - rate),
        "share_of_target": round(rate / TARGET_EVENTS_PER_S, 3),
    }


def print_report(results: dict[str, Any]) -> None:
    m, p, d = results["machine"], results["parameters"], results["data"]
    pg = m["postgresql"]
    print()
    print(
        f"meterd batch ingest on PostgreSQL: {p['events']:,} events in {p['batch']:,}-event"
        f" batches, {p['clients']} clients, median of {p['runs']} runs per figure"
    )
    print(
        f"machine: {m['cores']} cores, {m['cpu_model']}, Python {m['python']},"
        f" PostgreSQL {pg['server_version']} (synchronous_commit={pg['synchronous_commit']},"
        f" fsync={pg['fsync']}, wal_sync_method={pg['wal_sync_method']},"
        f" shared_buffers={pg['shared_buffers']}), psycopg {m['psycopg']};"
        f" load average {m['loadavg_1_5_15']} at start, {m['loadavg_1_5_15_at_end']} at end"
    )
    print(
        f"data: {d['customers']:,} customers, 3 event types, timestamps {d['first_ts']} .."
        f" {d['last_ts']}, metadata on half; JSON body {d['body_bytes_median']:,} bytes median;"
        f" meterd serve --close-interval {CLOSE_INTERVAL}; meterd writes"
        f" {d['rollup_rows_written']:,} rollup rows for them"
    )
    code = results["code"]
    if code.get("git_commit"):
        changes = ", ".join(code["uncommitted"]) or "none"
        print(
            f"code: meterd at git {code['git_commit']}; uncommitted changes on the ingest path:"
            f" {changes}"
        )
    print()
    print(
        f"{'':34} {'events/s':>9} {'':>26} {'vs raw':>7}  {'CPU ms per 1,000 events':^35}"
        f" {'machine':>7} {'own-CPU':>8}"
    )
    print(
        f"{'figure':34} {'median':>9} {'runs':>26} {'COPY':>7}  {'client':>8} {'meterd':>8}"
        f" {'postgres':>8} {'others':>8} {'busy':>7} {'ceiling':>8}"
    )
    cores = results["machine"]["cores"] or 1
    for figure, s in results["summary"].items():
        runs = ", ".join(f"{rate:,}" for rate in s["events_per_s_runs"])
        ratio = "n/a" if s["ratio_to_raw_copy"] is None else f"{s['ratio_to_raw_copy']:.2f}x"
        cpu = s["cpu_ms_per_1000_events"]
        own = cpu["load_generator"] + cpu["meterd"] + cpu["postgres"]
        ceiling = f"{cores * 1e6 / own:,.0f}" if own > 0 else "n/a"
        print(
            f"{figure:34} {s['events_per_s_median']:>9,} {runs:>26} {ratio:>7}  "
            + " ".join(f"{cpu[part]:>8.1f}" for part in CPU_PARTS)
            + f" {s['machine_busy_share']:>7.0%} {ceiling:>8}"
        )
    print()
    print(
        "client: the load generator (COPY: this process; HTTP: the client processes);"
        " meterd: its server processes or, in-process, this process; postgres: this run's"
        " backends and PostgreSQL's own processes; others: the rest of the machine's busy CPU"
        " (neighbours); busy: share of all cores busy during the run; own-CPU ceiling:"
        f" events/s if client+meterd+postgres had all {cores} cores to themselves."
    )
    goal = results["target"]
    if goal["best"] is not None:
        verdict = (
            "met"
            if goal["met"]
            else f"MISSED by {goal['short_by_events_per_s']:,} events/s"
            f" ({goal['share_of_target']:.0%} of the target)"
        )
        print(
            f"target: >= {goal['target_events_per_s']:,} events/s on PostgreSQL; best HTTP"
            f" figure {goal['best']}: {goal['best_events_per_s']:,} events/s, {verdict}"
        )
    problems = [f"{r['figure']}: {text}" for r in results["runs"] for text in r["problems"]]
    if problems:
        for text in problems:
            print(f"!!! {text}")
    else:
        print(
            f"check: every run stored {p['events']:,} events; meterd's rollup counts add up to"
            " the same; every HTTP answer was a 201 storing its whole batch: OK"
        )


# -- main --------------------------------------------------------------------------


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.postgres_ingest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--clients", type=int, default=4, help="client processes / tasks")
    parser.add_argument("--url", default=DEFAULT_URL, help="PostgreSQL on this machine")
    parser.add_argument("--runs", type=int, default=3, help="repetitions of each figure")
    parser.add_argument("--workers", default="1,2", help="meterd serve --workers to measure")
    parser.add_argument("--budget", type=float, default=300.0, help="seconds per run at most")
    parser.add_argument(
        "--timestamps",
        choices=("month", "hour"),
        default="month",
        help="spread events over the current month (default) or the last hour",
    )
    args = parser.parse_args(argv)
    try:
        workers = tuple(int(w) for w in args.workers.split(","))
    except ValueError:
        parser.error("--workers takes numbers separated by commas, like 1,2")
    if not _is_local(args.url):
        parser.error("--url must point at PostgreSQL on 127.0.0.1 (or localhost, or a socket)")
    if min(args.events, args.batch, args.clients, args.runs, *workers) < 1:
        parser.error("--events, --batch, --clients, --runs and --workers must be positive")
    if args.batch > 100_000 or args.clients > 64 or args.runs > 20:
        parser.error("--batch is at most 100,000, --clients 64, --runs 20")
    return Options(
        events=args.events,
        batch=args.batch,
        clients=args.clients,
        url=args.url,
        runs=args.runs,
        workers=workers,
        budget_s=args.budget,
        timestamps=args.timestamps,
    )


def _is_local(url: str) -> bool:
    try:
        hosts = psycopg.conninfo.conninfo_to_dict(url).get("host") or ""
    except psycopg.ProgrammingError:
        return False
    # No host means the local socket; a path is a socket directory.
    local = ("", "127.0.0.1", "localhost", "::1")
    return all(h in local or h.startswith("/") for h in str(hosts).split(","))


def run_all(opts: Options, workdir: Path) -> int:
    machine_at_start = machine_info(opts.url)
    config = {**CONFIG, "maxBatchSize": max(1_000, opts.batch)}
    (workdir / "systemconfig.json").write_text(json.dumps(config))
    started = time.monotonic()
    data = make_data(opts.events, opts.batch, now_ms(), opts.timestamps)
    print(
        f"data: {opts.events:,} events generated in {time.monotonic() - started:.1f} s", flush=True
    )
    runs: list[Run] = []
    for repetition in range(1, opts.runs + 1):
        # Interleaved, so that a busy neighbour on this shared machine hurts every figure alike.
        plans: list[Callable[[], Run]] = [
            functools.partial(copy_run, opts.url, data, opts, 1),
            functools.partial(copy_run, opts.url, data, opts, opts.clients),
            functools.partial(store_run, opts.url, data, opts),
        ]
        plans += [
            functools.partial(http_run, opts.url, data, opts, w, workdir) for w in opts.workers
        ]
        for plan in plans:
            run = plan()
            runs.append(run)
            print(
                f"run {repetition}/{opts.runs}: {run.figure}: {run.events_per_s:,.0f} events/s"
                f" ({run.events:,} events in {run.seconds:.2f} s)"
                + (f" PROBLEMS: {run.problems}" if run.problems else ""),
                flush=True,
            )
    summary = summarise(runs)
    sizes = sorted(len(body) for body in data.bodies)
    results: dict[str, Any] = {
        "benchmark": "postgres_ingest",
        "ran_at": format_ms(now_ms()),
        "machine": {**machine_at_start, "loadavg_1_5_15_at_end": machine.load_average()},
        "code": machine.code_version(INGEST_PATH),
        "parameters": {**asdict(opts), "url": opts.url, "close_interval": CLOSE_INTERVAL},
        "data": {
            "customers": CUSTOMERS,
            "event_types": EVENT_TYPES,
            "first_ts": format_ms(data.first_ts_ms),
            "last_ts": format_ms(data.last_ts_ms),
            "body_bytes_median": sizes[len(sizes) // 2],
            "rollup_rows_written": max(run.checks.get("rollup_rows", 0) for run in runs),
        },
        "summary": summary,
        "target": target_verdict(summary),
        "runs": [asdict(run) | {"events_per_s": round(run.events_per_s)} for run in runs],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print_report(results)
    print(f"results: {RESULTS}")
    return 1 if any(run.problems for run in runs) else 0


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_options(argv)
    with tempfile.TemporaryDirectory(prefix="meterd-bench-pg-") as workdir:
        return run_all(opts, Path(workdir))


if __name__ == "__main__":
    sys.exit(main())
