"""Where the SQLite ingest transaction's time goes, phase by phase, without a profiler.

    .venv/bin/python -m bench.ingest_phases [--events 200000] [--group 4000] [--workdir DIR]

Runs `meterd.storage.sqlite.event_insert.insert_events` with a clock around each step
it calls (each wrapped where it looks the step up), on the batch benchmark's events in
transactions of --group events (4 clients sending 1,000-event batches give groups of
about 4,000), from a connection opened as the writer opens it (synchronous=FULL,
meterd's checkpoint). A profiler would inflate the Python steps several times over;
these are wall times of the real steps. Every event is new, so dedup finds nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TypeVar
from unittest import mock

from bench.batch_ingest import make_data
from bench.figures import machine_line, start_info
from bench.machine import load_average
from meterd.ingest import NewEvent
from meterd.storage.sqlite import corrections, event_insert, group_rollups, rollups
from meterd.storage.sqlite.connect import connect
from meterd.storage.sqlite.event_insert import insert_events
from meterd.storage.sqlite.migrate import migrate
from meterd.storage.sqlite.store import store_queries
from meterd.timeutil import now_ms

T = TypeVar("T")


def new_events(count: int) -> list[NewEvent]:
    data = make_data(count, now_ms())
    return [
        NewEvent(
            row[1],
            row[2],
            row[3],
            row[4],
            None if row[5] is None else row[5].encode(),
            row[6],
            row[7],
        )
        for rows in data.row_batches
        for row in rows
    ]


def timed(spent: defaultdict[str, float], phase: str, fn: Callable[..., T]) -> Callable[..., T]:
    def run(*args: Any, **kwargs: Any) -> T:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[phase] += time.perf_counter() - started

    return run


def measure(db: Path, events: list[NewEvent], group: int) -> tuple[defaultdict[str, float], float]:
    """Seconds per phase over every transaction, and the wall time of them all."""
    conn = connect(str(db), synchronous="FULL")
    migrate(conn)
    queries = store_queries()
    spent: defaultdict[str, float] = defaultdict(float)
    # The steps insert_events calls, each wrapped in a clock where it looks them up.
    steps = [
        (event_insert, "_stored_by_id", "dedup lookup"),
        (event_insert, "insert_rows", "inserting events (table and 3 indexes)"),
        (event_insert, "fold", "folding partials (Python)"),
        (rollups, "upsert_partials", "upserting rollups"),
        (group_rollups, "keep_group_rollups", "group rollups"),
        (corrections, "note_late_events", "late events in closed periods"),
        (event_insert, "touch_watched", "alerts"),
    ]
    started = time.perf_counter()
    with ExitStack() as patches:
        for owner, name, phase in steps:
            patches.enter_context(
                mock.patch.object(owner, name, timed(spent, phase, getattr(owner, name)))
            )
        for start in range(0, len(events), group):
            chunk = events[start : start + group]
            jobs = [chunk[i : i + 1000] for i in range(0, len(chunk), 1000)]
            conn.execute("BEGIN IMMEDIATE")
            before = sum(spent.values())
            clock = time.perf_counter()
            insert_events(conn, queries, jobs)
            inside = time.perf_counter() - clock
            spent["the rest: rows, points, resolve (Python)"] += inside - (
                sum(spent.values()) - before
            )
            clock = time.perf_counter()
            conn.execute("COMMIT")
            spent["commit (WAL write, fsync, checkpoints)"] += time.perf_counter() - clock
    seconds = time.perf_counter() - started
    conn.close()
    return spent, seconds


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest_phases")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--group", type=int, default=4_000)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args(argv)
    info = start_info()
    events = new_events(args.events)
    with tempfile.TemporaryDirectory(prefix="meterd-phases-", dir=args.workdir) as tmp:
        spent, seconds = measure(Path(tmp) / "phases.db", events, args.group)
    info["loadavg_1_5_15_at_end"] = load_average()
    count = len(events)
    print(
        f"{count:,} events in {args.group:,}-event transactions: {count / seconds:,.0f} events/s,"
        f" {seconds / count * 1e6:.1f} us per event"
    )
    for phase, phase_s in sorted(spent.items(), key=lambda item: -item[1]):
        print(f"  {phase:50s} {phase_s / count * 1e6:6.2f} us/event  {phase_s / seconds:6.1%}")
    print(machine_line(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
