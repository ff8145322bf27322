"""Batch ingest: 1,000-event batches through HTTP, next to a raw `executemany` of the same rows.

1. Data, made once: N events with unique ids over a few thousand customers, the sample
   config's three event types, timestamps in the last hour, small metadata on half of
   them; as JSON bodies of 1,000 events and as the `events` rows they become.
2. Per round, each on a fresh database and alternating:
   - raw: the rows into a database with meterd's own schema (its migrations on a new
     file), from one connection set up like meterd's writer (WAL, synchronous=FULL,
     its wal_autocheckpoint), one `executemany` and one commit per 1,000 rows; no HTTP,
     no dedup, no rollups;
   - meterd: a fresh `meterd serve`, loaded by P client processes, one keep-alive
     connection each, posting the pre-encoded bodies to /usagebatch. A 201 means
     committed. Events/s run from the first send to the last 201. The server's peak
     RSS (VmHWM) is read after the load, before it stops.
3. Checks: every answer is a 201 that stored its whole batch, and the database holds
   exactly N events afterwards (the raw one too).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from bench import clients
from bench.events import EVENT_TYPES, METADATA, batch_item, sample_value
from bench.figures import Figure, PartResult, median
from bench.server import (
    new_api_key,
    peak_rss_mb,
    process_cpu_s,
    remove_db,
    running_meterd,
    server_pid,
    stored_events,
)
from meterd.storage.sqlite.connect import connect
from meterd.storage.sqlite.migrate import migrate
from meterd.timeutil import now_ms

BATCH = 1_000
CUSTOMERS = 5_000
SEED = 11
EVENT_TYPE_WEIGHTS = (0.7, 0.1, 0.2)
HOUR_MS = 3_600_000
INSERT_SQL = (
    "INSERT INTO events (seq, id, event_type, customer_id, value, metadata, ts, received_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
TARGET_PER_S = 100_000
TARGET_RSS_MB = 300
BUDGET_S = 300.0

Row = tuple[int, str, str, str, float, str | None, int, int]


@dataclass(frozen=True)
class Data:
    bodies: list[bytes]
    row_batches: list[list[Row]]

    @property
    def events(self) -> int:
        return sum(len(rows) for rows in self.row_batches)


def make_data(events: int, now: int) -> Data:
    """The same events as JSON bodies of BATCH events and as the rows they are stored as."""
    rng = random.Random(SEED)
    encoder = msgspec.json.Encoder()
    bodies, row_batches = [], []
    for start in range(0, events, BATCH):
        items: list[dict[str, Any]] = []
        rows: list[Row] = []
        for index in range(start, min(start + BATCH, events)):
            event_type = rng.choices(EVENT_TYPES, weights=EVENT_TYPE_WEIGHTS)[0]
            value = sample_value(rng, event_type)
            customer = f"cust_{rng.randrange(CUSTOMERS):05d}"
            ts = now - rng.randrange(HOUR_MS)
            metadata = METADATA if index % 2 == 0 else None
            event_id = f"batch{SEED}_{index:09d}"
            items.append(batch_item(event_id, event_type, customer, value, ts, metadata))
            text = None if metadata is None else metadata.decode()
            # meterd parses value as a float; store what it would store.
            rows.append((index + 1, event_id, event_type, customer, float(value), text, ts, now))
        bodies.append(encoder.encode(items))
        row_batches.append(rows)
    return Data(bodies, row_batches)


def raw_insert(db: Path, data: Data) -> float:
    """Rows per second into a new file with meterd's schema, a commit per batch."""
    conn = connect(str(db), synchronous="FULL")  # as meterd's writer opens it
    try:
        migrate(conn)
        inserted = 0
        started = time.perf_counter()
        deadline = started + BUDGET_S
        for rows in data.row_batches:
            if time.perf_counter() > deadline:
                break
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(INSERT_SQL, rows)
            conn.execute("COMMIT")
            inserted += len(rows)
        return inserted / (time.perf_counter() - started)
    finally:
        conn.close()


@dataclass
class MeterdRun:
    per_s: float
    seconds: float
    stored_by_answers: int
    stored_in_db: int
    statuses: dict[int, int]
    peak_rss_mb: float | None
    server_cpu_pct: float | None
    clients_cpu_pct: float
    errors: list[str]


def meterd_run(workdir: Path, db: Path, data: Data, processes: int) -> MeterdRun:
    api_key = new_api_key()
    headers = {"x-apikey": api_key, "content-type": "application/json"}
    shares: list[list[bytes | None]] = [list(data.bodies[i::processes]) for i in range(processes)]
    with running_meterd(workdir, db, api_key) as server:
        pid = server_pid(server)
        cpu: list[float | None] = []
        load = clients.run_clients(
            server.url,
            "/usagebatch",
            headers,
            shares,
            BUDGET_S,
            on_release=lambda pids: cpu.append(process_cpu_s(pid)),
        )
        cpu.append(process_cpu_s(pid))
        rss = peak_rss_mb(pid)
    seconds = load.seconds or 1e-9
    server_cpu = None
    if len(cpu) == 2 and cpu[0] is not None and cpu[1] is not None:
        server_cpu = 100 * (cpu[1] - cpu[0]) / seconds
    return MeterdRun(
        per_s=load.stored / seconds,
        seconds=seconds,
        stored_by_answers=load.stored,
        stored_in_db=stored_events(db),
        statuses=load.statuses,
        peak_rss_mb=rss,
        server_cpu_pct=server_cpu,
        clients_cpu_pct=100 * load.cpu_s / seconds,
        errors=load.errors[:5],
    )


def measure(workdir: Path, *, events: int, rounds: int, processes: int) -> PartResult:
    data = make_data(events, now_ms())
    raw_runs: list[float] = []
    runs: list[MeterdRun] = []
    problems: list[str] = []
    for index in range(rounds):
        raw_db = workdir / f"batch-raw-{index}.db"
        raw_runs.append(raw_insert(raw_db, data))
        if (stored := stored_events(raw_db)) != data.events:
            problems.append(f"raw insert round {index}: {stored:,} rows, {data.events:,} expected")
        remove_db(raw_db)
        db = workdir / f"batch-{index}.db"
        run = meterd_run(workdir, db, data, processes)
        runs.append(run)
        problems.extend(_problems(index, run, data))
        remove_db(db)
    result = _result(runs, raw_runs, processes, data)
    result.problems.extend(problems)
    return result


def _problems(index: int, run: MeterdRun, data: Data) -> list[str]:
    where = f"batch round {index}"
    found = [f"{where}: {error}" for error in run.errors]
    if run.statuses != {201: len(data.bodies)}:
        expected = len(data.bodies)
        found.append(f"{where}: answers by status {run.statuses}, {expected} x 201 expected")
    if run.stored_by_answers != data.events:
        found.append(f"{where}: the 201s stored {run.stored_by_answers:,} of {data.events:,}")
    if run.stored_in_db != data.events:
        found.append(f"{where}: {run.stored_in_db:,} events in the database, {data.events:,} sent")
    return found


def _result(runs: list[MeterdRun], raw_runs: list[float], processes: int, data: Data) -> PartResult:
    ingest = Figure(
        key="batch_ingest",
        name="batch ingest, 1,000-event batches",
        unit="events/s",
        runs=[run.per_s for run in runs],
        limit="raw executemany",
        limit_runs=raw_runs,
        target=f"≥ {TARGET_PER_S:,}/s durable",
    )
    ingest.met = ingest.value >= TARGET_PER_S
    server_cpu = [run.server_cpu_pct for run in runs if run.server_cpu_pct is not None]
    ingest.notes.append(
        f"{data.events:,} events per run from {processes} client processes;"
        f" median CPU: meterd {median(server_cpu) if server_cpu else 0:.0f}%, clients"
        f" {median([run.clients_cpu_pct for run in runs]):.0f}% (100% = one core)"
    )
    figures = [ingest]
    rss = [run.peak_rss_mb for run in runs if run.peak_rss_mb is not None]
    if rss:
        memory = Figure(
            key="batch_peak_rss",
            name="meterd serve peak RSS under batch load",
            unit="MB",
            runs=rss,
            lower_is_better=True,
            target=f"≤ {TARGET_RSS_MB} MB",
        )
        memory.met = memory.value <= TARGET_RSS_MB
        memory.notes.append("VmHWM of the server process after the load (MiB)")
        figures.append(memory)
    details = {
        "events": data.events,
        "batch": BATCH,
        "customers": CUSTOMERS,
        "client_processes": processes,
        "raw_executemany_per_s": raw_runs,
        "meterd_runs": [run.__dict__ for run in runs],
    }
    return PartResult(figures, [], details)
