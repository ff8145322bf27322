"""Covering indexes over the raw events of each meter that reads them (DESIGN §6).

Meters with `groupBy` or an op that partials cannot fold read their raw events. Each
gets a partial index `events_meter_<hash>` on (customer_id, ts, seq, value, metadata, event_type)
WHERE event_type = '<type>': reads touch only that meter's events and never the
table, and events of other types (every event of a plain config) cost ingest nothing.
The set follows the config: `sync_meter_indexes` creates what is missing and drops
what no meter needs any more. The query names the event type as a literal, which is
what lets SQLite (and PostgreSQL) prove the partial index applies.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable

PREFIX = "events_meter_"


def index_name(event_type: str) -> str:
    return PREFIX + hashlib.sha256(event_type.encode()).hexdigest()[:16]


def literal(text: str) -> str:
    """`text` as an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def index_sql(event_type: str) -> str:
    return (
        f"CREATE INDEX IF NOT EXISTS {index_name(event_type)}"
        f" ON events (customer_id, ts, seq, value, metadata, event_type)"
        f" WHERE event_type = {literal(event_type)}"
    )


def sync_meter_indexes(conn: sqlite3.Connection, event_types: Iterable[str]) -> list[str]:
    """Create the indexes `event_types` need and drop the others; the names created."""
    wanted = {index_name(t): t for t in event_types}
    existing = {
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE ?",
            (PREFIX + "%",),
        )
    }
    for name in sorted(existing - wanted.keys()):
        conn.execute(f"DROP INDEX IF EXISTS {name}")
    created = []
    for name in sorted(wanted.keys() - existing):
        conn.execute(index_sql(wanted[name]))
        created.append(name)
    return created
