"""Where the SQLite ingest transaction's time goes, phase by phase, without a profiler.

    .venv/bin/python -m bench.ingest_phases [--events 200000] [--group 4000] [--workdir DIR]
                                            [--report-every N] [--timestamps hour|flowing]
                                            [--checkpoint-every K]

Runs `meterd.storage.sqlite.event_insert.insert_events` with a clock around each step
it calls (each wrapped where it looks the step up), on the batch benchmark's events in
transactions of --group events (4 clients sending 1,000-event batches give groups of
about 4,000), from a connection opened as the writer opens it (synchronous=FULL,
meterd's checkpoint). A profiler would inflate the Python steps several times over;
these are wall times of the real steps. Every event is new, so dedup finds nothing.

Past BASE_EVENTS, the batch benchmark's events repeat under new ids. --timestamps says
when the repeats happened: `hour` keeps every event in the hour before now, as
`bench.ingest_profile` sends them (each million lands at random places in the same
stretch of the time-ordered indexes); `flowing` moves each repeat one hour later, as a
store fills over time. With --report-every N, the phases of every N events are printed
as they end, to see which step grows with the store.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TypeVar
from unittest import mock

import msgspec

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

# Not a time: WAL pages the commits wrote (kept with the phases to report per event).
PAGES = "WAL pages written"
# A WAL frame: a 24-byte header and a page of meterd's 4,096 bytes.
WAL_FRAME_BYTES = 4_096 + 24
# Events made once; beyond them the same events repeat under new ids.
BASE_EVENTS = 200_000
HOUR_MS = 3_600_000


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


def repeated_events(count: int, timestamps: str) -> Iterator[list[NewEvent]]:
    """`count` events in slices of BASE_EVENTS: slice k > 0 is the first slice under ids
    of its own, and an hour later per slice when `timestamps` is "flowing"."""
    base = new_events(min(count, BASE_EVENTS))
    for number, start in enumerate(range(0, count, BASE_EVENTS)):
        shift = number * HOUR_MS if timestamps == "flowing" else 0
        if number == 0:
            yield base
            continue
        yield [
            msgspec.structs.replace(e, id=f"r{number:05d}_{e.id}", ts_ms=e.ts_ms + shift)
            for e in base[: count - start]
        ]


def timed(spent: defaultdict[str, float], phase: str, fn: Callable[..., T]) -> Callable[..., T]:
    def run(*args: Any, **kwargs: Any) -> T:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[phase] += time.perf_counter() - started

    return run


def measure(
    db: Path,
    slices: Iterable[list[NewEvent]],
    group: int,
    report_every: int = 0,
    checkpoint_every: int = 0,
) -> tuple[defaultdict[str, float], float, int]:
    """Seconds per phase over every transaction, the wall time of them all and the
    number of events; every `report_every` events, the phases since the last report.

    With `checkpoint_every` K, SQLite's automatic checkpoint is off and the bench runs
    one itself (TRUNCATE) after every K transactions, timed as a phase of its own; the
    WAL's size then also tells how many pages each commit wrote."""
    conn = connect(str(db), synchronous="FULL")
    migrate(conn)
    wal = Path(f"{db}-wal")
    if checkpoint_every:
        conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    transactions = 0
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
    count = 0
    window: tuple[int, float, dict[str, float]] = (0, time.perf_counter(), {})
    started = time.perf_counter()
    with ExitStack() as patches:
        for owner, name, phase in steps:
            patches.enter_context(
                mock.patch.object(owner, name, timed(spent, phase, getattr(owner, name)))
            )
        for events in slices:
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
                wal_before = wal.stat().st_size if checkpoint_every else 0
                clock = time.perf_counter()
                conn.execute("COMMIT")
                spent["commit (WAL write, fsync, checkpoints)"] += time.perf_counter() - clock
                count += len(chunk)
                transactions += 1
                if checkpoint_every:
                    spent[PAGES] += (wal.stat().st_size - wal_before) / WAL_FRAME_BYTES
                    if transactions % checkpoint_every == 0:
                        clock = time.perf_counter()
                        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                        spent["checkpoint (pages back into the file, fsync)"] += (
                            time.perf_counter() - clock
                        )
                if report_every and count - window[0] >= report_every:
                    report_window(window, count, spent)
                    window = (count, time.perf_counter(), dict(spent))
    seconds = time.perf_counter() - started
    conn.close()
    return spent, seconds, count


def report_window(
    window: tuple[int, float, dict[str, float]], count: int, spent: dict[str, float]
) -> None:
    """One line: the events stored so far, the rate since the last line, and its phases."""
    first, started, before = window
    events = count - first
    phases = sorted(
        ((phase, total - before.get(phase, 0.0)) for phase, total in spent.items()),
        key=lambda item: -item[1],
    )
    shown = ", ".join(
        f"{phase.split(' (')[0]} {s / events * 1e6:.2f}" for phase, s in phases if phase != PAGES
    )
    pages = dict(phases).get(PAGES)
    written = "" if pages is None else f"; {pages / events:.2f} WAL pages/event"
    rate = events / (time.perf_counter() - started)
    print(f"  at {count:>11,}: {rate:8,.0f} events/s{written}; us/event: {shown}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest_phases")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--group", type=int, default=4_000)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--report-every", type=int, default=0, metavar="N")
    parser.add_argument("--timestamps", choices=("hour", "flowing"), default="hour")
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=0,
        metavar="K",
        help="checkpoint after every K transactions, timed apart (default: SQLite's own)",
    )
    args = parser.parse_args(argv)
    info = start_info()
    slices = repeated_events(args.events, args.timestamps)
    with tempfile.TemporaryDirectory(prefix="meterd-phases-", dir=args.workdir) as tmp:
        spent, seconds, count = measure(
            Path(tmp) / "phases.db", slices, args.group, args.report_every, args.checkpoint_every
        )
    info["loadavg_1_5_15_at_end"] = load_average()
    print(
        f"{count:,} events in {args.group:,}-event transactions: {count / seconds:,.0f} events/s,"
        f" {seconds / count * 1e6:.1f} us per event"
    )
    pages = spent.pop(PAGES, None)
    if pages is not None:
        print(f"  {pages / count:.2f} WAL pages written per event")
    for phase, phase_s in sorted(spent.items(), key=lambda item: -item[1]):
        print(f"  {phase:50s} {phase_s / count * 1e6:6.2f} us/event  {phase_s / seconds:6.1%}")
    print(machine_line(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
