"""The webhook delivery worker in-process, profiled: where a delivery's CPU goes.

    .venv/bin/python -m bench.webhook_profile [--deliveries N] [--concurrency C]
                                              [--log text|json|off] [--top N]

Starts bench.webhook_delivery's receiver (its own process, 127.0.0.1), prepares N
pending deliveries on a fresh SQLite file, then runs the real `DeliveryWorker` on uvloop
(with Metrics, as `meterd serve` runs it) until none is pending, under cProfile: the
event loop's thread, in CPU time. The SQLite writer thread is not profiled; the CPU per
delivery of the event loop's thread and of all others is printed. With --log text or
json (default text), meterd.webhooks logs as `meterd serve` does, one line per attempt,
to a temporary file. Prints deliveries/s, the CPU per delivery and the top of the
profile by own time. Bounded: the run stops after --budget seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import logging.config
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.webhook_delivery import ReceiverProcess, bench_config, prepare, run_uvloop
from meterd.logs import logging_config
from meterd.metrics import Metrics
from meterd.storage.sqlite.store import SQLiteStore
from meterd.webhooks.delivery import DeliveryWorker


def thread_cpu_s() -> dict[str, float]:
    """CPU seconds so far of the event loop's thread and of all others (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[str, float] = {}
    for task in Path("/proc/self/task").glob("*"):
        try:
            name = "event loop" if task.name == str(os.getpid()) else "other threads"
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[name] = found.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return found


async def deliver_all(
    db: Path, url: str, deliveries: int, concurrency: int, budget_s: float, profile: bool
) -> tuple[float, float, int, cProfile.Profile | None]:
    """Seconds, CPU seconds, deliveries pending at the end, and the profile; prints the CPU
    of each thread per delivery."""
    config = bench_config(url)
    store = SQLiteStore(str(db))
    await store.open()
    # CPU time: waits on a busy machine do not count.
    profiler = cProfile.Profile(time.thread_time) if profile else None
    try:
        await prepare(store, config, deliveries)
        worker = DeliveryWorker(store, config, concurrency=concurrency, metrics=Metrics())
        if profiler is not None:
            profiler.enable()
        threads_before = thread_cpu_s()
        cpu_before, started = time.process_time(), time.perf_counter()
        worker.start()
        deadline = started + budget_s
        while await store.count_deliveries("pending") and time.perf_counter() < deadline:
            await asyncio.sleep(0.02)
        elapsed, cpu_s = time.perf_counter() - started, time.process_time() - cpu_before
        threads = thread_cpu_s()
        await worker.stop()
        if profiler is not None:
            profiler.disable()
        left = await store.count_deliveries("pending")
    finally:
        await store.close()
    done = max(deliveries - left, 1)
    print(
        "CPU per delivery by thread: "
        + ", ".join(
            f"{name} {1e6 * (cpu - threads_before.get(name, 0.0)) / done:.0f} µs"
            for name, cpu in sorted(threads.items())
        )
    )
    return elapsed, cpu_s, left, profiler


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.webhook_profile", description=__doc__)
    parser.add_argument("--deliveries", type=int, default=5_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--log", choices=("text", "json", "off"), default="text")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--no-profile", action="store_true", help="time without cProfile")
    parser.add_argument("--budget", type=float, default=120.0, help="seconds at most")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="meterd-webhook-profile-") as workdir:
        log_file = Path(workdir) / "meterd.log"
        if args.log != "off":
            config = logging_config(args.log)
            config["handlers"]["default"] = {
                "class": "logging.FileHandler",
                "formatter": "meterd",
                "filename": str(log_file),
            }
            logging.config.dictConfig(config)
        receiver = ReceiverProcess()
        receiver.start()
        try:
            elapsed, cpu_s, left, profiler = run_uvloop(
                deliver_all(
                    Path(workdir) / "profile.db",
                    receiver.url,
                    args.deliveries,
                    args.concurrency,
                    args.budget,
                    not args.no_profile,
                )
            )
        finally:
            receiver.stop()
        lines = sum(1 for _ in log_file.open()) if log_file.exists() else 0
    done = args.deliveries - left
    print(
        f"{done} deliveries in {elapsed:.2f} s: {done / elapsed:,.0f}/s,"
        f" CPU {1e6 * cpu_s / max(done, 1):.0f} µs per delivery"
        f" ({'profiled' if profiler else 'not profiled'}, log {args.log}: {lines} lines)"
    )
    if profiler is not None:
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(args.top)
    return 0 if left == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
