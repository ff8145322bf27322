"""What a folder would buy on SQLite: the ingest transaction as it is, against the same
work split into an acknowledging commit and a later fold of many commits at once.

    .venv/bin/python -m bench.fold_potential [--events 1000000] [--group 4000]
                                             [--fold-every 25] [--report-every N]
                                             [--timestamps hour|flowing] [--workdir DIR]

Not meterd's behaviour today, and no reads are served: a measurement of the next step
(README, Benchmarks). Three layouts, each on a new file filled with the same events
(bench.ingest_phases' data) in --group-event transactions, one after another:

- `today`: `event_insert.insert_events` as the ingest process runs it.
- `rollups folded`: the same function, but its `write_derived` (rollups, daily partials
  of late events, group rollups, notes of late events, alert marks) only collects its
  input; every --fold-every transactions one more transaction runs `write_derived` on
  everything collected.
- `index and rollups folded`: as above, and the index by customer is not on `events`:
  the fold writes (customer_id, ts, seq) into a table of its own keyed that way, sorted.

Each fold runs right after the commit that fills it, in the same thread: the figure is
the speed at which acknowledging and folding together keep up, as one writer would.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from unittest import mock

from bench.figures import machine_line, start_info
from bench.ingest_phases import repeated_events
from bench.machine import load_average
from meterd.ingest import NewEvent
from meterd.storage.sqlite import event_insert
from meterd.storage.sqlite.connect import connect
from meterd.storage.sqlite.event_insert import insert_events
from meterd.storage.sqlite.migrate import migrate
from meterd.storage.sqlite.store import store_queries

LAYOUTS = ("today", "rollups folded", "index and rollups folded")
CUSTOMER_EVENTS = """
CREATE TABLE customer_events (
    customer_id TEXT NOT NULL, ts INTEGER NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (customer_id, ts, seq)
) WITHOUT ROWID
"""


class Collected:
    """What insert_events handed to `write_derived` since the last fold."""

    def __init__(self) -> None:
        self.rows: list[Any] = []
        self.points: list[Any] = []
        self.compacted: int | None = None

    def keep(
        self, conn: Any, queries: Any, rows: list[Any], points: list[Any], compacted: int | None
    ) -> None:
        """Stands in for `write_derived` in the acknowledging transaction."""
        self.rows.extend(rows)
        self.points.extend(points)
        self.compacted = compacted

    def clear(self) -> None:
        self.rows, self.points = [], []


# The real step, looked up before any patch.
_WRITE_DERIVED = event_insert.write_derived


def fold_collected(
    conn: sqlite3.Connection, queries: dict[str, str], collected: Collected, index: bool
) -> None:
    """What insert_events derives, once, from everything collected."""
    _WRITE_DERIVED(conn, queries, collected.rows, collected.points, collected.compacted)
    if index:
        keys = sorted((row[3], row[6], row[0]) for row in collected.rows)
        conn.executemany("INSERT INTO customer_events VALUES (?, ?, ?)", keys)


def run_layout(
    db: Path,
    layout: str,
    slices: Sequence[list[NewEvent]],
    group: int,
    fold_every: int,
    report_every: int,
) -> tuple[float, float]:
    """Events per second over every slice, and the seconds of it spent folding; with
    `report_every`, the rate of the slice that passes each multiple of it."""
    conn = connect(str(db), synchronous="FULL")
    migrate(conn)
    folded = layout != "today"
    index = layout == "index and rollups folded"
    if index:
        conn.execute("DROP INDEX events_by_customer_time")
        conn.execute(CUSTOMER_EVENTS)
    queries = dict(store_queries())
    collected = Collected()
    count, transactions, reported, folding = 0, 0, 0, 0.0
    started = time.perf_counter()
    with ExitStack() as patches:
        if folded:
            patches.enter_context(mock.patch.object(event_insert, "write_derived", collected.keep))
        for events in slices:
            slice_started = time.perf_counter()
            for start in range(0, len(events), group):
                chunk = events[start : start + group]
                conn.execute("BEGIN IMMEDIATE")
                insert_events(
                    conn, queries, [chunk[i : i + 1000] for i in range(0, len(chunk), 1000)]
                )
                conn.execute("COMMIT")
                transactions += 1
                if folded and transactions % fold_every == 0:
                    folding += fold_now(conn, queries, collected, index)
            count += len(events)
            if report_every and count - reported >= report_every:
                rate = len(events) / (time.perf_counter() - slice_started)
                print(f"  at {count:>11,}: {rate:8,.0f} events/s (this slice)", flush=True)
                reported = count
        if folded and collected.points:
            folding += fold_now(conn, queries, collected, index)
    seconds = time.perf_counter() - started
    conn.close()
    return count / seconds, folding


def fold_now(
    conn: sqlite3.Connection, queries: dict[str, str], collected: Collected, index: bool
) -> float:
    """Fold what was collected in a transaction of its own; returns its seconds."""
    started = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    fold_collected(conn, queries, collected, index)
    conn.execute("COMMIT")
    collected.clear()
    return time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fold_potential")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--group", type=int, default=4_000)
    parser.add_argument("--fold-every", type=int, default=25, metavar="K")
    parser.add_argument("--report-every", type=int, default=0, metavar="N")
    parser.add_argument("--timestamps", choices=("hour", "flowing"), default="flowing")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args(argv)
    info = start_info()
    slices = list(repeated_events(args.events, args.timestamps))
    results = {}
    for layout in LAYOUTS:
        print(f"{layout}:", flush=True)
        with tempfile.TemporaryDirectory(prefix="meterd-fold-", dir=args.workdir) as tmp:
            results[layout] = run_layout(
                Path(tmp) / "fold.db",
                layout,
                slices,
                args.group,
                args.fold_every,
                args.report_every,
            )
    info["loadavg_1_5_15_at_end"] = load_average()
    print(
        f"{args.events:,} events ({args.timestamps} timestamps) in {args.group:,}-event"
        f" commits, folds every {args.fold_every} commits:"
    )
    today = results["today"][0]
    for layout, (rate, folding) in results.items():
        line = f"  {layout:26s} {rate:8,.0f} events/s  {rate / today:4.2f} of today"
        if folding:
            seconds = args.events / rate
            line += (
                f"; acknowledging alone {args.events / (seconds - folding):,.0f}/s,"
                f" folding {folding / seconds:.0%} of the time"
            )
        print(line)
    print(machine_line(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
