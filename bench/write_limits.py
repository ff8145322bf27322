"""What bounds a durable SQLite ingest: raw `executemany` over checkpoints, commits and indexes.

    .venv/bin/python -m bench.write_limits [--events N] [--rounds 3] [--random-ids]
                                           [--budget-s 120] [--workdir DIR]

The cost of an ingest transaction under WAL with synchronous=FULL is decided by two
things: how many B-tree pages it dirties per commit (every page an insert touches is
written to the WAL whole, and an index on a random key, such as (customer_id, ts) over
thousands of customers, touches a different page for almost every row), and how often the
WAL is copied back into the database file (a checkpoint, run by the committing connection
once the WAL passes `wal_autocheckpoint` pages). So this loads N events, the rows of
bench/batch_ingest.py's `make_data`, into a fresh file with one connection set up like
meterd's (WAL, synchronous=FULL, cache_size=-65536, temp_store=MEMORY), one `executemany`
and one COMMIT for each batch of rows, over three grids:

  checkpoint  wal_autocheckpoint 1,000 pages (SQLite's default), 5,000, meterd's
              WAL_AUTOCHECKPOINT_PAGES, 100,000 and 0 (off); meterd's schema, 1,000-row commits
  commit      1,000, 5,000 and 20,000 rows a commit; meterd's schema and checkpoint
  indexes     meterd's events indexes as they are, none, only the unique id, only
              (customer_id, ts); 1,000-row commits, meterd's checkpoint

meterd's schema is its migrations run on the new file; the index layouts drop indexes
from it. Each round runs every variant once, each on a new file, starting one variant
later than the round before; the figure is the median of the rounds. Rows/s run from the
first BEGIN to the last COMMIT; closing the connection checkpoints what the WAL still
holds, and that time is printed apart (it is what autocheckpoint off defers, not saves).
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.batch_ingest import CUSTOMERS, INSERT_SQL, Row, make_data
from bench.figures import machine_line, median, start_info
from bench.machine import load_average
from bench.server import filesystem_of, remove_db
from meterd.storage.sqlite.connect import WAL_AUTOCHECKPOINT_PAGES, connect
from meterd.storage.sqlite.migrate import migrate
from meterd.timeutil import now_ms

INDEXES = ("events_by_id", "events_by_customer_time", "events_by_time")
RANDOM_ID_SEED = 12
BUDGET_S = 120.0


@dataclass(frozen=True)
class Variant:
    """One load: equal variants in two grids are measured once."""

    checkpoint_pages: int = WAL_AUTOCHECKPOINT_PAGES
    commit_rows: int = 1_000
    indexes: tuple[str, ...] = INDEXES


@dataclass(frozen=True)
class Run:
    per_s: float
    close_s: float
    rows: int
    stopped_early: bool


METERD = Variant()
METERD_LABEL = "(meterd's)"
GRIDS: dict[str, list[tuple[str, Variant]]] = {
    "checkpoint pages (meterd's schema, 1,000-row commits)": [
        ("1,000 (SQLite's default)", Variant(checkpoint_pages=1_000)),
        ("5,000", Variant(checkpoint_pages=5_000)),
        (f"{WAL_AUTOCHECKPOINT_PAGES:,} {METERD_LABEL}", METERD),
        ("100,000", Variant(checkpoint_pages=100_000)),
        ("0 (off)", Variant(checkpoint_pages=0)),
    ],
    "rows per commit (meterd's schema and checkpoint)": [
        (f"1,000 {METERD_LABEL}", METERD),
        ("5,000", Variant(commit_rows=5_000)),
        ("20,000", Variant(commit_rows=20_000)),
    ],
    "events indexes (1,000-row commits, meterd's checkpoint)": [
        (f"id unique, (customer_id, ts), ts {METERD_LABEL}", METERD),
        ("none", Variant(indexes=())),
        ("id unique only", Variant(indexes=("events_by_id",))),
        ("(customer_id, ts) only", Variant(indexes=("events_by_customer_time",))),
    ],
}


def event_rows(events: int, *, random_ids: bool) -> list[Row]:
    """batch_ingest's rows; with `random_ids`, uuid4-like ids in place of its ascending ones."""
    rows = [row for batch in make_data(events, now_ms()).row_batches for row in batch]
    if not random_ids:
        return rows
    rng = random.Random(RANDOM_ID_SEED)
    return [(row[0], str(uuid.UUID(int=rng.getrandbits(128), version=4)), *row[2:]) for row in rows]


def load(db: Path, rows: list[Row], variant: Variant, budget_s: float) -> Run:
    """One load into a new file: rows/s over the commits, then the close timed apart."""
    # A connection opened as meterd's writer opens it, with this variant's checkpoint.
    conn = connect(str(db), synchronous="FULL")
    try:
        conn.execute(f"PRAGMA wal_autocheckpoint={variant.checkpoint_pages}")
        migrate(conn)
        for index in INDEXES:
            if index not in variant.indexes:
                conn.execute(f"DROP INDEX {index}")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every load starts on an empty WAL
        inserted = 0
        started = time.perf_counter()
        deadline = started + budget_s
        for start in range(0, len(rows), variant.commit_rows):
            if time.perf_counter() > deadline:
                break
            batch = rows[start : start + variant.commit_rows]
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(INSERT_SQL, batch)
            conn.execute("COMMIT")
            inserted += len(batch)
        seconds = time.perf_counter() - started
    finally:
        closing = time.perf_counter()
        conn.close()
    close_s = time.perf_counter() - closing
    return Run(inserted / seconds, close_s, inserted, inserted < len(rows))


def stored_rows(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    finally:
        conn.close()


def measure(
    workdir: Path, rows: list[Row], rounds: int, budget_s: float
) -> tuple[dict[Variant, list[Run]], list[str]]:
    """Every variant once a round, each round starting one variant later; and what went wrong."""
    variants = list(dict.fromkeys(v for grid in GRIDS.values() for _, v in grid))
    runs: dict[Variant, list[Run]] = {variant: [] for variant in variants}
    problems: list[str] = []
    for round_ in range(rounds):
        shift = round_ % len(variants)
        for number, variant in enumerate(variants[shift:] + variants[:shift]):
            db = workdir / f"limits-{round_}-{number}.db"
            run = load(db, rows, variant, budget_s)
            runs[variant].append(run)
            if (stored := stored_rows(db)) != run.rows:
                problems.append(f"{variant} round {round_}: {stored:,} rows, {run.rows:,} sent")
            remove_db(db)
        print(f"round {round_ + 1}/{rounds} done", file=sys.stderr, flush=True)
    return runs, problems


def report(runs: dict[Variant, list[Run]], rows: int, random_ids: bool) -> None:
    ids = "uuid4-like random ids" if random_ids else "ascending ids (batch11_000000000, ...)"
    print(
        f"{rows:,} events from bench.batch_ingest.make_data, {ids}, {CUSTOMERS:,} customers;"
        " WAL, synchronous=FULL, cache_size=-65536, an executemany and a COMMIT a batch"
    )
    print("rows/s from the first BEGIN to the last COMMIT; close: the final checkpoint, apart")
    for title, grid in GRIDS.items():
        print(f"\n{title}")
        for label, variant in grid:
            these = runs[variant]
            every = ", ".join(f"{run.per_s:,.0f}" for run in these)
            early = ""
            if any(run.stopped_early for run in these):
                early = f" budget stopped a load at {min(run.rows for run in these):,} rows"
            print(
                f"  {label:<44} {median([run.per_s for run in these]):>9,.0f} rows/s"
                f"  close {median([run.close_s for run in these]):5.2f} s  [{every}]{early}"
            )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.write_limits", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--random-ids", action="store_true", help="uuid4-like ids, not ascending")
    parser.add_argument("--budget-s", type=float, default=BUDGET_S, help="per load")
    parser.add_argument("--workdir", type=Path, help="where the files go (not a tmpfs)")
    args = parser.parse_args(argv)
    info = start_info()
    rows = event_rows(args.events, random_ids=args.random_ids)
    with tempfile.TemporaryDirectory(prefix="meterd-limits-", dir=args.workdir) as tmp:
        runs, problems = measure(Path(tmp), rows, args.rounds, args.budget_s)
        filesystem = filesystem_of(Path(tmp))
    info["loadavg_1_5_15_at_end"] = load_average()
    report(runs, len(rows), args.random_ids)
    print(f"\n{machine_line(info)}; files on {filesystem}")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
