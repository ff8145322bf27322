"""The SQLite ingest path in-process, without HTTP: parse, then the store, profiled.

    .venv/bin/python -m bench.ingest_profile [--events N] [--batch 1000] [--tasks 4]
                                             [--profile] [--workdir DIR] [--report-every N]
                                             [--ingest-process]

Parses pre-encoded 1,000-event bodies with `parse_batch` and ingests them through
`SQLiteStore.ingest` from --tasks concurrent asyncio tasks (group commit at work), on
a fresh database with synchronous=FULL; with --ingest-process the transactions run in
the store's ingest process, as under `meterd serve`. Prints events/s for the parse alone
and for parse + store, the CPU per event of this process and its children, and with
--profile the top of a cProfile of the whole run (the writer
thread included, through `threading.setprofile`).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from bench.batch_ingest import BATCH, make_data
from bench.server import process_cpu_s
from meterd.ingest import parse_batch
from meterd.storage.sqlite.store import SQLiteStore
from meterd.timeutil import now_ms

KNOWN_TYPES = frozenset({"api.calls", "storage.bytes", "response.time.ms"})


def make_bodies(events: int, chunk: int = 100_000) -> list[bytes]:
    """The batch benchmark's bodies: one chunk made, repeated with ids made unique."""
    data = make_data(min(chunk, events), now_ms())
    bodies: list[bytes] = []
    for number, start in enumerate(range(0, events, chunk)):
        wanted = -(-min(chunk, events - start) // BATCH)
        bodies.extend(body.replace(b'"batch', b'"c%05d_' % number) for body in data.bodies[:wanted])
    return bodies


def parse_all(bodies: list[bytes]) -> float:
    started = time.perf_counter()
    events = 0
    for body in bodies:
        events += len(
            parse_batch(body, known_types=KNOWN_TYPES, max_batch_size=1000, received_ms=now_ms())
        )
    return events / (time.perf_counter() - started)


async def ingest_all(
    db: Path, bodies: list[bytes], tasks: int, report_every: int, ingest_process: bool
) -> float:
    """Events/s through parse + store; every `report_every` events, the rate since the last."""
    store = SQLiteStore(str(db), ingest_process=ingest_process)
    await store.open()
    progress = {"stored": 0, "mark": 0, "since": time.perf_counter()}

    def report(stored: int) -> None:
        progress["stored"] += stored
        if report_every and progress["stored"] - progress["mark"] >= report_every:
            now = time.perf_counter()
            rate = (progress["stored"] - progress["mark"]) / (now - progress["since"])
            print(f"  {progress['stored']:>11,} stored: {rate:,.0f} events/s", flush=True)
            progress.update(mark=progress["stored"], since=now)

    try:
        shares = [bodies[i::tasks] for i in range(tasks)]

        async def run(share: list[bytes]) -> int:
            stored = 0
            for body in share:
                events = parse_batch(
                    body, known_types=KNOWN_TYPES, max_batch_size=1000, received_ms=now_ms()
                )
                kept = sum(await store.ingest(events))
                report(kept)
                stored += kept
            return stored

        started, cpu = time.perf_counter(), process_cpu_s(os.getpid()) or 0.0
        stored = sum(await asyncio.gather(*(run(share) for share in shares)))
        seconds = time.perf_counter() - started
        cpu_us = ((process_cpu_s(os.getpid()) or 0.0) - cpu) / max(stored, 1) * 1e6
        print(
            "CPU of this process and its children (parse, writer, SQLite):"
            f" {cpu_us:.1f} us per event"
        )
    finally:
        await store.close()
    if stored != sum(body.count(b'"id"') for body in bodies):
        raise RuntimeError(f"stored {stored} events, expected every one")
    return stored / seconds


def _profile_thread(profilers: list[cProfile.Profile]) -> None:
    """Profile the calling thread (the writer thread too) with a profiler of its own."""
    sys.setprofile(None)
    profiler = cProfile.Profile(time.thread_time)  # CPU time: waits on a busy machine do not count
    profilers.append(profiler)
    profiler.enable()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest_profile")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--report-every", type=int, default=0, metavar="N")
    parser.add_argument("--ingest-process", action="store_true")
    args = parser.parse_args(argv)
    bodies = make_bodies(args.events)
    print(f"parse_batch alone: {parse_all(bodies[:200]):,.0f} events/s", flush=True)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        db = Path(tmp) / "profile.db"
        profilers: list[cProfile.Profile] = []
        if args.profile:
            threading.setprofile(lambda *_: _profile_thread(profilers))
            _profile_thread(profilers)
        per_s = asyncio.run(
            ingest_all(db, bodies, args.tasks, args.report_every, args.ingest_process)
        )
        for profiler in profilers:
            profiler.disable()
        print(f"parse + SQLiteStore.ingest: {per_s:,.0f} events/s ({args.tasks} tasks)")
    if profilers:
        stats = pstats.Stats(profilers[0])
        for profiler in profilers[1:]:
            stats.add(profiler)
        stats.sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
