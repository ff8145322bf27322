"""Single-event ingest: 64 connections, one event per request, next to the no-op route.

`wrk` (2 threads, 64 connections) posts `POST /usage/api.calls` with a body of its own
per request (bench/wrk/single_event.lua: a fresh id prefix per run), alternating with
`GET /ping` runs on the same server: the same stack (uvicorn, Starlette, the API-key
middleware's public-path check) without parsing or storage. The no-op figure is what
this machine, wrk included, can serve at all, so it shows the load generator is not
what limits ingest. Without wrk, smoke mode falls back to Python client processes.

After the server stopped, every run's ids are counted in the database: at least every
201 answer must be stored, and nothing beyond the requests wrk built.
"""

from __future__ import annotations

import os
import re
import resource
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import clients
from bench.figures import Figure, PartResult, median
from bench.server import (
    new_api_key,
    peak_rss_mb,
    process_cpu_s,
    running_meterd,
    server_pid,
    stored_events,
)

LUA = Path(__file__).parent / "wrk" / "single_event.lua"
THREADS = 2
CONNECTIONS = 64
EVENT_PATH = "/usage/api.calls"
WARMUP_S = 2
TIMEOUT_S = 10
TARGET_PER_S = 10_000
TARGET_SHARE_OF_NOOP = 0.5
# The Python fallback: processes, and requests each may send in one run.
FALLBACK_PROCESSES = 4
FALLBACK_REQUESTS = 2_000


class WrkMissing(RuntimeError):
    """wrk is not installed: `apt-get install wrk` (needed outside smoke mode)."""


@dataclass
class LoadRun:
    """One timed run against one route."""

    per_s: float
    answered: int
    failed: int
    seconds: float
    built: int | None = None
    server_cpu_pct: float | None = None
    generator_cpu_pct: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


_REQUESTS = re.compile(r"^\s*(\d+) requests in ([\d.]+)(ms|s|m)", re.MULTILINE)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s*(\d+)")
_SOCKET_ERRORS = re.compile(r"Socket errors: (.+)")
_BUILT = re.compile(r"^bench_requests_built (\d+)", re.MULTILINE)
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0}


def parse_wrk(output: str) -> LoadRun:
    """Answers, non-2xx answers and socket errors from wrk's report; 2xx answers per second."""
    requests = _REQUESTS.search(output)
    if requests is None:
        raise RuntimeError(f"cannot read wrk's report:\n{output}")
    answered = int(requests[1])
    seconds = float(requests[2]) * _UNIT_S[requests[3]]
    non_2xx = _NON_2XX.search(output)
    failed = int(non_2xx[1]) if non_2xx else 0
    built = _BUILT.search(output)
    run = LoadRun(
        per_s=(answered - failed) / seconds,
        answered=answered,
        failed=failed,
        seconds=seconds,
        built=int(built[1]) if built else None,
    )
    errors = _SOCKET_ERRORS.search(output)
    if errors:
        run.notes.append(f"socket errors: {errors[1].strip()}")
    return run


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(
    wrk: str, base_url: str, path: str, seconds: int, *, run_id: str | None, api_key: str
) -> LoadRun:
    """One wrk run; with `run_id` it posts events through the Lua script, else GETs `path`."""
    # A durable answer may wait for an fsync: count it late rather than as a timeout.
    command = [wrk, f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", f"--timeout={TIMEOUT_S}s"]
    env = dict(os.environ)
    if run_id is not None:
        command += ["-s", str(LUA)]
        env.update(METERD_BENCH_KEY=api_key, METERD_BENCH_RUN=run_id)
    cpu_before = _children_cpu_s()
    finished = subprocess.run(
        [*command, base_url + path], env=env, capture_output=True, text=True, timeout=seconds + 60
    )
    if finished.returncode != 0:
        raise RuntimeError(f"wrk failed ({finished.returncode}): {finished.stderr.strip()}")
    run = parse_wrk(finished.stdout)
    run.generator_cpu_pct = 100 * (_children_cpu_s() - cpu_before) / run.seconds
    return run


def run_python_clients(
    base_url: str, path: str, seconds: int, *, run_id: str | None, api_key: str
) -> LoadRun:
    """The fallback without wrk: a few client processes, each one request at a time."""
    shares: list[list[bytes | None]] = []
    for process in range(FALLBACK_PROCESSES):
        if run_id is None:
            shares.append([None] * FALLBACK_REQUESTS)
            continue
        shares.append(
            [
                b'{"customerId":"cust-%d","value":%d,"id":"%s-%d-%d"}'
                % (n % 1000, n % 100, run_id.encode(), process, n)
                for n in range(1, FALLBACK_REQUESTS + 1)
            ]
        )
    headers = {"x-apikey": api_key, "content-type": "application/json"}
    result = clients.run_clients(base_url, path, headers, shares, float(seconds))
    answered = sum(result.statuses.values())
    failed = answered - sum(n for status, n in result.statuses.items() if 200 <= status < 400)
    seconds_taken = result.seconds or 1e-9
    run = LoadRun(
        per_s=(answered - failed) / seconds_taken,
        answered=answered,
        failed=failed,
        seconds=seconds_taken,
        built=result.sent,
        generator_cpu_pct=100 * result.cpu_s / seconds_taken,
    )
    run.notes.extend(result.errors[:3])
    return run


@dataclass(frozen=True)
class Generator:
    """Who makes the load: its name, a label for figure names, and the whole story."""

    name: str
    label: str
    description: str

    @classmethod
    def wrk(cls) -> Generator:
        return cls(
            "wrk",
            f"{CONNECTIONS} connections",
            f"wrk, {THREADS} threads, {CONNECTIONS} connections",
        )

    @classmethod
    def python(cls) -> Generator:
        clients = f"{FALLBACK_PROCESSES} Python clients"
        return cls("Python clients", clients, f"{clients} (processes), no wrk")


@dataclass
class Rounds:
    noop: list[LoadRun] = field(default_factory=list)
    ingest: list[LoadRun] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)


def measure(workdir: Path, *, rounds: int, seconds: int, smoke: bool) -> PartResult:
    """`rounds` pairs of runs, no-op then ingest, on one `meterd serve`; then the count check."""
    wrk = shutil.which("wrk")
    if wrk is None and not smoke:
        raise WrkMissing("wrk is not installed; install it with `apt-get install wrk`")
    load = Generator.wrk() if wrk else Generator.python()
    api_key = new_api_key()
    db = workdir / "single.db"
    session = secrets.token_hex(3)
    done = Rounds()
    with running_meterd(workdir, db, api_key) as server:
        pid = server_pid(server)

        def timed(run_id: str | None, path: str, length: int) -> LoadRun:
            cpu_before = process_cpu_s(pid)
            if wrk is not None:
                run = run_wrk(wrk, server.url, path, length, run_id=run_id, api_key=api_key)
            else:
                run = run_python_clients(server.url, path, length, run_id=run_id, api_key=api_key)
            cpu_after = process_cpu_s(pid)
            if cpu_before is not None and cpu_after is not None:
                run.server_cpu_pct = 100 * (cpu_after - cpu_before) / run.seconds
            return run

        if not smoke:
            timed(f"s{session}w", EVENT_PATH, WARMUP_S)  # not counted: the server warms up
        for index in range(rounds):
            done.noop.append(timed(None, "/ping", seconds))
            done.run_ids.append(f"s{session}r{index}")
            done.ingest.append(timed(done.run_ids[-1], EVENT_PATH, seconds))
        rss = peak_rss_mb(pid)
    problems = _check_counts(db, done)
    return _result(done, load, rss, problems)


def _check_counts(db: Path, done: Rounds) -> list[str]:
    """Every 201 answer stored; nothing stored that was never asked for."""
    problems = []
    for run_id, run in zip(done.run_ids, done.ingest, strict=True):
        stored = stored_events(db, run_id + "-")
        acknowledged = run.answered - run.failed
        upper = run.built if run.built is not None else acknowledged
        run.notes.append(f"{stored:,} events stored for {acknowledged:,} answers 201")
        if not acknowledged <= stored <= upper:
            problems.append(
                f"single-event run {run_id}: {stored:,} events stored, but {acknowledged:,}"
                f" were acknowledged with 201 and {upper:,} requests were built"
            )
        if run.failed:
            problems.append(f"single-event run {run_id}: {run.failed:,} answers were not 2xx")
    return problems


def _result(done: Rounds, load: Generator, rss: float | None, problems: list[str]) -> PartResult:
    ingest = Figure(
        key="single_event_ingest",
        name=f"single-event ingest, {load.label}",
        unit="events/s",
        runs=[run.per_s for run in done.ingest],
        limit="no-op GET /ping",
        limit_runs=[run.per_s for run in done.noop],
        limit_unit="req/s",
        target=f"≥ {TARGET_PER_S:,}/s and ≥ {TARGET_SHARE_OF_NOOP:.0%} of no-op",
    )
    ratio = ingest.ratio
    ingest.met = ingest.value >= TARGET_PER_S and (ratio or 0.0) >= TARGET_SHARE_OF_NOOP
    noop = Figure(
        key="noop_ping",
        name=f"no-op GET /ping, {load.label}",
        unit="req/s",
        runs=[run.per_s for run in done.noop],
    )
    noop.notes.append("the limit of single-event ingest: this server stack and load generator")
    for figure, runs in ((ingest, done.ingest), (noop, done.noop)):
        figure.notes.append(_cpu_note(load, runs))
    if load.name != "wrk":
        for figure in (ingest, noop):
            figure.notes.append("wrk is not installed: Python clients, one request at a time each")
    details = {
        "generator": load.description,
        "server_peak_rss_mb": rss,
        "noop_runs": [run.to_json() for run in done.noop],
        "ingest_runs": [run.to_json() for run in done.ingest],
    }
    return PartResult([ingest, noop], problems, details)


def _cpu_note(load: Generator, runs: list[LoadRun]) -> str:
    server = [run.server_cpu_pct for run in runs if run.server_cpu_pct is not None]
    used = [run.generator_cpu_pct for run in runs if run.generator_cpu_pct is not None]
    parts = []
    if server:
        parts.append(f"meterd {median(server):.0f}%")
    if used:
        parts.append(f"{load.name} {median(used):.0f}%")
    return "median CPU over wall time (100% = one core): " + ", ".join(parts)
