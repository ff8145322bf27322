"""Bring a SQLite database to the current schema."""

from __future__ import annotations

import sqlite3

from meterd.errors import SchemaTooNew
from meterd.storage.sqlfiles import Migration, read_migrations, read_schema
from meterd.timeutil import now_ms

PACKAGE = "meterd.storage.sqlite"

_CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS meterd_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at INTEGER NOT NULL
)"""


def current_version(conn: sqlite3.Connection) -> int:
    conn.execute(_CREATE_MIGRATIONS_TABLE)
    row = conn.execute("SELECT coalesce(max(version), 0) FROM meterd_migrations").fetchone()
    return int(row[0])


def migrate(conn: sqlite3.Connection, *, target: int | None = None) -> list[Migration]:
    """Apply what is missing, in one transaction; a fresh database gets schema.sql.

    `target` stops at an older version (used by the tests that check that
    upgrading and creating fresh give the same schema). Returns what was applied.
    """
    migrations = read_migrations(PACKAGE)
    latest = migrations[-1].version
    target = latest if target is None else target
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = current_version(conn)
        if version > latest:
            raise SchemaTooNew(
                f"the database is at schema version {version}; this meterd knows up to {latest}"
            )
        pending = [m for m in migrations if version < m.version <= target]
        if version == 0 and target == latest:
            _execute_script(conn, read_schema(PACKAGE))
        else:
            for migration in pending:
                _execute_script(conn, migration.sql)
        conn.executemany(
            "INSERT INTO meterd_migrations (version, name, applied_at) VALUES (?, ?, ?)",
            [(m.version, m.name, now_ms()) for m in pending],
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return pending


def _execute_script(conn: sqlite3.Connection, script: str) -> None:
    # executescript() would commit first; run statement by statement inside our transaction.
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            conn.execute(statement)
            statement = ""
    if statement.strip() and not statement.strip().startswith("--"):
        raise ValueError(f"incomplete SQL statement: {statement!r}")
