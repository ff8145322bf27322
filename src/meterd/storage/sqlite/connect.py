"""How meterd opens a SQLite connection: the writer's, the readers', the ingest process's."""

from __future__ import annotations

import sqlite3

from meterd.storage.sqlite import rollups
from meterd.storage.sqlite.multirow import STATEMENT_CACHE

# WAL pages before the committing connection copies them back into the database file.
# SQLite's default, 1,000, checkpoints after almost every 1,000-event commit (each one
# dirties a page per customer in the index by customer). Raw inserts into meterd's
# schema at 1,000-row commits, 2026-11-30, two runs: 20,000 pages (80 MB of WAL) gave
# 63k and 81k rows/s where the default gave 39k and 48k; 5,000 gave 50k and 70k, 100,000
# (a larger WAL to search) 49k and 75k, none at all 41k and 66k: `python -m bench.write_limits`.
WAL_AUTOCHECKPOINT_PAGES = 20_000


def connect(path: str, *, synchronous: str, readonly: bool = False) -> sqlite3.Connection:
    """A connection in WAL mode with meterd's functions; read-only ones cannot write."""
    conn = sqlite3.connect(
        path,
        isolation_level=None,
        check_same_thread=False,
        timeout=10.0,
        cached_statements=STATEMENT_CACHE,
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA cache_size=-65536")
    conn.execute("PRAGMA temp_store=MEMORY")
    rollups.register_functions(conn)
    if readonly:
        conn.execute("PRAGMA query_only=1")
    else:
        conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
    return conn
