"""Covering indexes over the raw events of each meter that reads them, in PostgreSQL.

Same idea as storage/sqlite/meter_indexes.py: a partial index per meter type,
built with CREATE INDEX CONCURRENTLY so ingest and reads go on while it builds.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg

from meterd.storage.sqlite.meter_indexes import PREFIX, index_name, literal

__all__ = ["literal", "sync_meter_indexes"]


async def sync_meter_indexes(
    conn: psycopg.AsyncConnection[tuple[Any, ...]], event_types: Iterable[str]
) -> list[str]:
    """Create the indexes `event_types` need and drop the others (`conn` in autocommit)."""
    wanted = {index_name(t): t for t in event_types}
    cursor = await conn.execute(
        b"SELECT c.relname, i.indisvalid FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid"
        b" WHERE c.relname LIKE %s AND c.relnamespace = current_schema()::regnamespace",
        (PREFIX + "%",),
    )
    existing = {name: valid for name, valid in await cursor.fetchall()}
    for name in sorted(existing.keys() - wanted.keys()):
        await conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}".encode())
    created = []
    for name in sorted(wanted):
        if existing.get(name) is True:
            continue
        if name in existing:  # an interrupted concurrent build leaves an invalid index
            await conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}".encode())
        await conn.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name}"
            f" ON events (customer_id, ts, seq, value, metadata, event_type)"
            f" WHERE event_type = {literal(wanted[name])}".encode()
        )
        created.append(name)
    return created
