"""Which B-trees one SQLite ingest commit writes, page by page, in a store of N events.

    .venv/bin/python -m bench.commit_pages [--stored 2000000] [--group 4000]
                                           [--timestamps hour|flowing] [--workdir DIR]

Fills a new store with --stored events the way bench.ingest_phases does (the batch
benchmark's events, repeated under new ids; `flowing` moves each repeat an hour later),
then commits three more --group-event transactions with the automatic checkpoint off,
each after a checkpoint that empties the WAL. The pages in the WAL after the last one
are what that commit wrote; SQLite's dbstat table names the B-tree each belongs to. A
commit costs about the same per page written (WAL write and fsync, and the checkpoint
copies each page back), so this says which structure makes a commit expensive.
"""

from __future__ import annotations

import argparse
import struct
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from bench.figures import machine_line, start_info
from bench.ingest_phases import BASE_EVENTS, measure, repeated_events
from bench.machine import load_average
from meterd.ingest import NewEvent
from meterd.storage.sqlite.connect import connect
from meterd.storage.sqlite.event_insert import insert_events
from meterd.storage.sqlite.store import store_queries

WAL_HEADER_BYTES = 32
FRAME_HEADER_BYTES = 24
# Commits measured after the fill; the last one is reported (the first ones warm up).
COMMITS = 3


def wal_pages(wal: Path) -> set[int]:
    """The page numbers of every frame in a WAL file."""
    data = wal.read_bytes()
    page_size = struct.unpack(">I", data[8:12])[0]
    pages = set()
    offset = WAL_HEADER_BYTES
    while offset + FRAME_HEADER_BYTES <= len(data):
        pages.add(struct.unpack(">I", data[offset : offset + 4])[0])
        offset += FRAME_HEADER_BYTES + page_size
    return pages


def pages_by_tree(db: Path, events: list[NewEvent], group: int) -> Counter[str]:
    """Per B-tree, the pages the last of COMMITS ingest commits of `group` events wrote."""
    conn = connect(str(db), synchronous="FULL")
    try:
        conn.execute("PRAGMA wal_autocheckpoint=0")
        queries = store_queries()
        for number in range(COMMITS):
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            chunk = events[number * group : (number + 1) * group]
            conn.execute("BEGIN IMMEDIATE")
            insert_events(conn, queries, [chunk[i : i + 1000] for i in range(0, group, 1000)])
            conn.execute("COMMIT")
        written = wal_pages(Path(f"{db}-wal"))
        names = dict(conn.execute("SELECT pageno, name FROM dbstat"))
    finally:
        conn.close()
    return Counter(names.get(page, "(freed or new)") for page in written)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.commit_pages")
    parser.add_argument("--stored", type=int, default=2_000_000)
    parser.add_argument("--group", type=int, default=4_000)
    parser.add_argument("--timestamps", choices=("hour", "flowing"), default="flowing")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args(argv)
    if args.group * COMMITS > BASE_EVENTS:
        parser.error(f"--group times {COMMITS} must stay within {BASE_EVENTS:,}")
    if args.stored % BASE_EVENTS:
        parser.error(f"--stored must be a multiple of {BASE_EVENTS:,}")
    info = start_info()
    slices = list(repeated_events(args.stored + BASE_EVENTS, args.timestamps))
    with tempfile.TemporaryDirectory(prefix="meterd-pages-", dir=args.workdir) as tmp:
        db = Path(tmp) / "pages.db"
        measure(db, slices[:-1], args.group)
        counts = pages_by_tree(db, slices[-1], args.group)
    info["loadavg_1_5_15_at_end"] = load_average()
    total = sum(counts.values())
    print(
        f"{args.stored:,} events stored ({args.timestamps} timestamps): one"
        f" {args.group:,}-event commit wrote {total:,} pages, {total / args.group:.2f} per event"
    )
    for name, pages in counts.most_common():
        print(f"  {name:32s} {pages:7,} pages  {pages / args.group:5.2f} per event")
    print(machine_line(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
