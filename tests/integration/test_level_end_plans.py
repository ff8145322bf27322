"""Finding where a corrected time-weighted level ends never scans the events table: both
queries the settle runs for it are index searches, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import psycopg

from meterd.storage.postgres.meter_indexes import literal
from meterd.storage.postgres.store import PostgresStore
from meterd.storage.sqlfiles import read_queries
from meterd.storage.sqlite.meters import with_type
from meterd.storage.sqlite.store import SQLiteStore, store_queries

PARAMS = {"customer": "c", "from_ms": 0, "to_ms": 900_000, "ts": 900_000, "seq": -1, "limit": 200}
NAMES = ("bucket_level_metadata", "later_levels")


async def test_sqlite_searches_events_through_an_index(tmp_path: Path) -> None:
    path = tmp_path / "meterd.db"
    store = SQLiteStore(str(path))
    await store.open()
    await store.close()
    queries = store_queries()
    with closing(sqlite3.connect(path)) as conn:
        for name in NAMES:
            sql = "EXPLAIN QUERY PLAN " + with_type(queries[name], "seats")
            steps = [row[3] for row in conn.execute(sql, PARAMS)]
            assert any(s.startswith("SEARCH events USING") for s in steps), (name, steps)
            assert not any(s.startswith("SCAN events") for s in steps), (name, steps)


async def test_postgresql_reads_events_through_an_index(postgres_url: str) -> None:
    store = PostgresStore(postgres_url)
    await store.open()
    await store.close()
    queries = read_queries("meterd.storage.postgres", "corrections.sql")
    with psycopg.connect(postgres_url) as conn:
        # An empty table is cheapest to read whole; forbid that to see what serves it.
        conn.execute(b"SET enable_seqscan = off")
        for name in NAMES:
            sql = queries[name].replace("%(event_type)s", literal("seats"))
            plan = "\n".join(row[0] for row in conn.execute(("EXPLAIN " + sql).encode(), PARAMS))
            assert "Seq Scan on events" not in plan, (name, plan)
            assert "Index" in plan, (name, plan)
