"""Webhook deliveries per second from the real delivery worker to a local receiver.

    .venv/bin/python -m bench.webhook_delivery [--deliveries N] [--concurrency C [C ...]]
                                               [--runs R] [--budget SECONDS]

1. Receiver: one uvicorn process (uvloop, httptools) serving a bare ASGI app that reads
   the body and answers 200, on 127.0.0.1, in a process of its own so that it does not
   share an interpreter with what is measured. It counts the requests it answered.
2. Setup, per run, on a fresh SQLite file: one event for each of N customers on a past
   day through `SQLiteStore.ingest`, then `PeriodCloser.close_completed(now)`: N closed
   records and N pending outbox rows, as a closing `meterd serve` writes them.
3. Delivery: the real `DeliveryWorker` (dry_run=False, concurrency C) in-process on
   uvloop, as in `meterd serve`, until no delivery is pending. Every delivery must end
   `delivered`, and the receiver must have answered exactly N requests.
4. Ceiling: C aiohttp clients (the fastest raw Python HTTP client measured here) POSTing
   the same body with the same headers to the same receiver, N requests, no database
   and no signing: what HTTP alone allows.

Each figure is the median of R runs; worker and ceiling runs alternate, so background
load on a shared machine hits both alike. Results are printed with the machine and
written to bench/results/webhook_delivery.json. Every loop is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import httpx
import uvloop
from tests.acceptance.server import free_port

from bench import machine
from meterd.closing import PeriodCloser
from meterd.config.loader import parse_config
from meterd.config.model import SystemConfig
from meterd.ingest import NewEvent
from meterd.storage.sqlite.store import SQLiteStore
from meterd.timeutil import format_ms, now_ms
from meterd.webhooks.delivery import ATTEMPT_TIMEOUT_S, DeliveryWorker
from meterd.webhooks.signing import signed_headers

T = TypeVar("T")

RESULTS = Path(__file__).parent / "results" / "webhook_delivery.json"
TARGET_PER_S = 2_000
# The worker must reach at least this share of the raw client's speed.
TARGET_RATIO = 0.5
SECRET = "whsec_" + "bWV0ZXJkLWJlbmNoLXdlYmhvb2stc2VjcmV0LWtleQ=="
INGEST_CHUNK = 5_000
DAY_MS = 86_400_000
POLL_S = 0.02

# The receiver: a bare ASGI app, so that it costs as little as an HTTP server can.
# POST: read the body, count, answer 200. GET: the count so far.
RECEIVER_SOURCE = """
import sys
import uvicorn

answered = 0

async def app(scope, receive, send):
    global answered
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    if scope["method"] == "POST":
        answered += 1
        body = b'{"ok":true}'
    else:
        body = str(answered).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
            access_log=False, lifespan="off", loop="uvloop", http="httptools")
"""


@dataclass(frozen=True)
class Options:
    deliveries: int
    concurrencies: tuple[int, ...]
    runs: int
    budget_s: float
    results: Path = RESULTS


class ReceiverProcess:
    """The receiver in a subprocess on 127.0.0.1; always terminated on exit."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self, timeout: float = 20.0) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", RECEIVER_SOURCE, str(self.port)],
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the receiver exited with status {self.process.returncode}")
            try:
                self.answered()
                return
            except httpx.TransportError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("the receiver did not start")

    def answered(self) -> int:
        return int(httpx.get(self.url, timeout=5, trust_env=False).text)

    def cpu_s(self) -> float | None:
        """CPU seconds the receiver has used so far (Linux /proc; None elsewhere)."""
        assert self.process is not None
        try:
            stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        except OSError:
            return None
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


# -- the machine ---------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    info = machine.machine_info()
    del info["loadavg_1_5_15"]
    return {
        **info,
        "event_loop": f"uvloop {metadata.version('uvloop')}",
        "aiohttp": aiohttp.__version__,
        "load_average_at_start": load_average(),
    }


load_average = machine.load_average


def environment_notes() -> list[str]:
    notes = []
    if importlib.util.find_spec("sniffio") is None:
        notes.append(
            "sniffio is not installed: httpcore imports it for every async lock and"
            " semaphore it sets up, so each request pays failed imports (sys.path scans)"
        )
    return notes


# -- one worker run ------------------------------------------------------------


def bench_config(url: str) -> SystemConfig:
    document = {
        "periods": ["daily"],
        "events": {"api.calls": {"op": "sum"}},
        "webhooks": [{"url": url, "secret": SECRET, "enabled": True}],
    }
    return parse_config(json.dumps(document).encode(), "<bench config>")


async def prepare(store: SQLiteStore, config: SystemConfig, deliveries: int) -> float:
    """N customers' events on a past day, closed: N pending deliveries. Returns seconds."""
    started = time.perf_counter()
    now = now_ms()
    day_start = (now // DAY_MS - 3) * DAY_MS
    for first in range(0, deliveries, INGEST_CHUNK):
        events = [
            NewEvent(
                id=f"evt-{i}",
                event_type="api.calls",
                customer_id=f"cust_{i:06d}",
                value=float(1 + i % 1000),
                metadata=None,
                ts_ms=day_start + 43_200_000 + i % 3_600_000,
                received_ms=now,
            )
            for i in range(first, min(first + INGEST_CHUNK, deliveries))
        ]
        await store.ingest(events)
    closed = await PeriodCloser(store, config).close_completed(now_ms())
    if closed != deliveries:
        raise RuntimeError(f"closing wrote {closed} records, expected {deliveries}")
    return time.perf_counter() - started


async def count_status(store: SQLiteStore, deliveries: int) -> dict[str, int]:
    records = await store.list_deliveries(status=None, limit=deliveries + 1, before_id=None)
    counts: dict[str, int] = {}
    for record in records:
        counts[record.status] = counts.get(record.status, 0) + 1
    return counts


async def worker_run(
    path: Path, config: SystemConfig, opts: Options, concurrency: int
) -> dict[str, Any]:
    """Set up N pending deliveries, then time the worker until none is pending."""
    store = SQLiteStore(str(path))
    await store.open()
    try:
        setup_s = await prepare(store, config, opts.deliveries)
        worker = DeliveryWorker(store, config, dry_run=False, concurrency=concurrency)
        cpu_before = time.process_time()
        started = time.perf_counter()
        worker.start()
        deadline = started + opts.budget_s
        try:
            # count_deliveries: an index count (0.2 ms at 5,000 pending). The newest
            # pending delivery (list_deliveries, ORDER BY id DESC) sorts every pending row:
            # 4.4 ms of this process's CPU every poll, charged to the worker's figure.
            while await store.count_deliveries("pending"):
                if time.perf_counter() > deadline:
                    break
                await asyncio.sleep(POLL_S)
            elapsed = time.perf_counter() - started
            cpu_s = time.process_time() - cpu_before
        finally:
            recancels = await stop_worker(worker)
        counts = await count_status(store, opts.deliveries)
    finally:
        await store.close()
    delivered = counts.get("delivered", 0)
    return {
        "setup_s": round(setup_s, 3),
        "elapsed_s": round(elapsed, 3),
        "delivered": delivered,
        "statuses": counts,
        "timed_out": delivered < opts.deliveries,
        "per_s": delivered / elapsed,
        "bench_cpu_pct": round(100 * cpu_s / elapsed, 1),
        "stop_needed_extra_cancels": recancels,
        **attempt_stats(path),
    }


async def stop_worker(worker: DeliveryWorker) -> int:
    """`worker.stop()`, bounded: on Python 3.11 its cancel can be lost (`asyncio.wait_for`
    swallows it when `_wake` was just set), so cancel again. Returns the extra cancels."""
    stopping = asyncio.ensure_future(worker.stop())
    for extra in range(20):
        done, _ = await asyncio.wait({stopping}, timeout=0.5)
        if done:
            return extra
        if worker._task is not None:
            worker._task.cancel()
    raise RuntimeError("the delivery worker did not stop")


def attempt_stats(path: Path) -> dict[str, Any]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        attempts, mean_ms, failures = conn.execute(
            "SELECT count(*), avg(latency_ms), sum(status_code IS NOT 200) FROM delivery_attempts"
        ).fetchone()
    return {
        "attempts": attempts,
        "mean_attempt_latency_ms": round(mean_ms or 0.0, 2),
        "failed_attempts": failures or 0,
    }


# -- the HTTP-only ceiling -----------------------------------------------------


async def ceiling_run(url: str, opts: Options, concurrency: int, body: bytes) -> dict[str, Any]:
    """N POSTs of `body`, `concurrency` at a time, with the headers a delivery carries."""
    headers = signed_headers((SECRET,), "msg_" + "0" * 32, now_ms() // 1000, body)
    remaining = opts.deliveries
    failures = 0
    deadline = time.perf_counter() + opts.budget_s

    async def client_loop(session: aiohttp.ClientSession) -> None:
        nonlocal remaining, failures
        while remaining > 0 and time.perf_counter() < deadline:
            remaining -= 1
            async with asyncio.timeout(ATTEMPT_TIMEOUT_S):
                async with session.post(
                    url, data=body, headers=headers, allow_redirects=False
                ) as response:
                    await response.read()
                    failures += response.status != 200

    # The worker's client settings: one session, a connection per concurrent request.
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:
        cpu_before = time.process_time()
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        cpu_s = time.process_time() - cpu_before
    sent = opts.deliveries - max(remaining, 0)
    return {
        "elapsed_s": round(elapsed, 3),
        "bench_cpu_pct": round(100 * cpu_s / elapsed, 1),
        "sent": sent,
        "failures": failures,
        "timed_out": sent < opts.deliveries,
        "per_s": sent / elapsed,
    }


async def sample_body(path: Path) -> bytes:
    store = SQLiteStore(str(path))
    await store.open()
    try:
        [record] = await store.list_deliveries(status=None, limit=1, before_id=None)
        return record.payload
    finally:
        await store.close()


# -- driving it ----------------------------------------------------------------


def run_uvloop(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop, the loop `meterd serve` gets from uvicorn."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


def measure(
    opts: Options, concurrency: int, receiver: ReceiverProcess, workdir: Path
) -> dict[str, Any]:
    config = bench_config(receiver.url)
    workers: list[dict[str, Any]] = []
    ceilings: list[dict[str, Any]] = []
    for index in range(opts.runs):
        path = workdir / f"c{concurrency}-run{index}.db"
        before, cpu_before = receiver.answered(), receiver.cpu_s()
        result = run_uvloop(worker_run(path, config, opts, concurrency))
        result["receiver_answered"] = receiver.answered() - before
        result["receiver_cpu_pct"] = cpu_pct(cpu_before, receiver.cpu_s(), result["elapsed_s"])
        workers.append(result)
        print(
            f"  c={concurrency} run {index + 1}: worker {result['per_s']:8.1f}/s"
            f" ({result['delivered']} in {result['elapsed_s']:.2f}s,"
            f" setup {result['setup_s']:.2f}s)",
            end="",
            flush=True,
        )
        body = run_uvloop(sample_body(path))
        remove_db(path)
        cpu_before = receiver.cpu_s()
        ceiling = run_uvloop(ceiling_run(receiver.url, opts, concurrency, body))
        ceiling["receiver_cpu_pct"] = cpu_pct(cpu_before, receiver.cpu_s(), ceiling["elapsed_s"])
        ceiling["payload_bytes"] = len(body)
        ceilings.append(ceiling)
        print(f"   ceiling {ceiling['per_s']:8.1f}/s", flush=True)
    worker_median = statistics.median(r["per_s"] for r in workers)
    ceiling_median = statistics.median(r["per_s"] for r in ceilings)
    return {
        "concurrency": concurrency,
        "worker_per_s": round(worker_median, 1),
        "ceiling_per_s": round(ceiling_median, 1),
        "ratio": round(worker_median / ceiling_median, 3),
        "meets_target": worker_median >= TARGET_PER_S
        and worker_median >= TARGET_RATIO * ceiling_median,
        "worker_runs": workers,
        "ceiling_runs": ceilings,
    }


def cpu_pct(before: float | None, after: float | None, elapsed_s: float) -> float | None:
    if before is None or after is None:
        return None
    return round(100 * (after - before) / elapsed_s, 1)


def remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def problems_of(rows: Sequence[dict[str, Any]], deliveries: int) -> list[str]:
    """Runs whose numbers cannot be trusted: not all delivered, or not exactly once."""
    found = []
    for row in rows:
        for index, run in enumerate(row["worker_runs"], 1):
            where = f"c={row['concurrency']} run {index}"
            if run["delivered"] != deliveries or run["statuses"] != {"delivered": deliveries}:
                found.append(f"{where}: statuses {run['statuses']}")
            if run["receiver_answered"] != deliveries:
                found.append(f"{where}: the receiver answered {run['receiver_answered']}")
            if run["failed_attempts"]:
                found.append(f"{where}: {run['failed_attempts']} attempts failed")
        for index, run in enumerate(row["ceiling_runs"], 1):
            if run["timed_out"] or run["failures"]:
                found.append(f"ceiling c={row['concurrency']} run {index}: {run}")
    return found


def median_of(runs: Sequence[dict[str, Any]], key: str) -> float | None:
    values = [run[key] for run in runs if run.get(key) is not None]
    return statistics.median(values) if values else None


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}%"


def print_report(results: dict[str, Any]) -> None:
    m = results["machine"]
    print()
    print(
        f"machine: {m['cores']} cores, {m['cpu_model']}, Python {m['python']},"
        f" SQLite {m['sqlite']}, {m['event_loop']}, aiohttp {m['aiohttp']}, {m['platform']}"
    )
    print(f"load average at start: {m['load_average_at_start']}, at end: {results['load_at_end']}")
    p = results["parameters"]
    print(
        f"{p['deliveries']} deliveries per run, median of {p['runs']} runs;"
        f" payload {results['payload_bytes']} bytes; target >= {TARGET_PER_S}/s"
        f" and >= {TARGET_RATIO} of the ceiling"
    )
    print()
    header = (
        f"{'concurrency':>11}  {'worker/s':>9}  {'ceiling/s':>9}  {'ratio':>5}"
        f"  {'attempt ms':>10}  {'cpu bench':>9}  {'cpu recv':>8}"
        f"  {'ceiling cpu b/r':>15}  {'worker runs/s':<16}  target"
    )
    print(header)
    print("-" * len(header))
    for row in results["rows"]:
        runs, ceilings = row["worker_runs"], row["ceiling_runs"]
        latency = median_of(runs, "mean_attempt_latency_ms") or 0.0
        each = " ".join(f"{r['per_s']:.0f}" for r in runs)
        ceiling_cpu = (
            f"{percent(median_of(ceilings, 'bench_cpu_pct'))}"
            f"/{percent(median_of(ceilings, 'receiver_cpu_pct'))}"
        )
        print(
            f"{row['concurrency']:>11}  {row['worker_per_s']:>9.1f}  {row['ceiling_per_s']:>9.1f}"
            f"  {row['ratio']:>5.2f}  {latency:>10.2f}"
            f"  {percent(median_of(runs, 'bench_cpu_pct')):>9}"
            f"  {percent(median_of(runs, 'receiver_cpu_pct')):>8}"
            f"  {ceiling_cpu:>15}  {each:<16}  {'met' if row['meets_target'] else 'NOT met'}"
        )
    print()
    print("worker/s: deliveries/s by the real DeliveryWorker, signing and recording each;")
    print("ceiling/s: bare aiohttp POSTs of the same body, same concurrency, no database;")
    print("ratio: worker/s over ceiling/s; attempt ms: mean attempt latency meterd recorded;")
    print("cpu: CPU time over wall time of the bench process (all threads) and the receiver.")
    for note in results["notes"]:
        print(f"note: {note}")


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench.webhook_delivery", description=__doc__)
    parser.add_argument("--deliveries", type=int, default=5_000)
    parser.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        default=[16, 32, 64],
        help="one or more worker concurrencies (default: 16 32 64)",
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--budget", type=float, default=120.0, help="seconds per run")
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help=f"the JSON file (default {RESULTS})"
    )
    args = parser.parse_args(argv)
    if args.deliveries < 1 or args.runs < 1 or min(args.concurrency) < 1:
        parser.error("--deliveries, --runs and --concurrency must be positive")
    return Options(
        deliveries=args.deliveries,
        concurrencies=tuple(args.concurrency),
        runs=args.runs,
        budget_s=args.budget,
        results=args.results,
    )


def run(opts: Options, workdir: Path) -> int:
    machine = machine_info()
    receiver = ReceiverProcess()
    receiver.start()
    rows = []
    try:
        for concurrency in opts.concurrencies:
            print(f"concurrency {concurrency} ...", flush=True)
            rows.append(measure(opts, concurrency, receiver, workdir))
    finally:
        receiver.stop()
    problems = problems_of(rows, opts.deliveries)
    results: dict[str, Any] = {
        "benchmark": "webhook_delivery",
        "ran_at": format_ms(now_ms()),
        "machine": machine,
        "parameters": {
            "deliveries": opts.deliveries,
            "concurrencies": list(opts.concurrencies),
            "runs": opts.runs,
            "budget_s": opts.budget_s,
            "sqlite_synchronous": "FULL",
            "receiver": "one uvicorn process (uvloop, httptools), bare ASGI app",
        },
        "payload_bytes": rows[0]["ceiling_runs"][0]["payload_bytes"],
        "target_per_s": TARGET_PER_S,
        "rows": rows,
        "problems": problems,
        "load_at_end": load_average(),
        "notes": environment_notes(),
    }
    opts.results.parent.mkdir(parents=True, exist_ok=True)
    opts.results.write_text(json.dumps(results, indent=2) + "\n")
    print_report(results)
    print(f"results: {opts.results}")
    for problem in problems:
        print(f"!!! {problem}")
    return 1 if problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_options(argv)
    workdir = Path(tempfile.mkdtemp(prefix="meterd-bench-webhooks-"))
    try:
        return run(opts, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
