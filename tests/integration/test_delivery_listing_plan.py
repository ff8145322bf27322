"""Listing deliveries by status, newest first, walks an index: no sort of every row of
that status (the console and `GET /deliveries?status=pending` with a large backlog)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import psycopg

from meterd.storage.postgres.store import PostgresStore
from meterd.storage.rows import SELECT_DELIVERIES
from meterd.storage.sqlbuild import select_where
from meterd.storage.sqlite.store import SQLiteStore


def listing() -> tuple[str, list[object]]:
    """The stores' listing query (both build it this way; PostgreSQL turns ? into %s)."""
    return select_where(
        SELECT_DELIVERIES,
        [("status = ?", "pending"), ("id < ?", 10**9)],
        order_by="id DESC",
        limit=50,
    )


async def test_sqlite_lists_deliveries_by_status_without_sorting(tmp_path: Path) -> None:
    path = tmp_path / "meterd.db"
    store = SQLiteStore(str(path))
    await store.open()
    await store.close()
    sql, params = listing()
    with closing(sqlite3.connect(path)) as conn:
        steps = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]
    assert any("deliveries_by_status" in step for step in steps), steps
    assert not any("TEMP B-TREE" in step for step in steps), steps


async def test_postgresql_lists_deliveries_by_status_without_sorting(postgres_url: str) -> None:
    store = PostgresStore(postgres_url)
    await store.open()
    await store.close()
    sql, params = listing()
    sql = sql.replace("?", "%s")
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        await conn.execute("SET enable_seqscan = off")
        cursor = await conn.execute(("EXPLAIN " + sql).encode(), params)
        plan = "\n".join(row[0] for row in await cursor.fetchall())
    assert "deliveries_by_status" in plan, plan
    assert "Sort" not in plan, plan
