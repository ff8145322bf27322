"""Bring a PostgreSQL database to the current schema, safely from several processes."""

from __future__ import annotations

import psycopg

from meterd.errors import SchemaTooNew
from meterd.storage.sqlfiles import Migration, read_migrations, read_schema
from meterd.timeutil import now_ms

PACKAGE = "meterd.storage.postgres"

_CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS meterd_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at BIGINT NOT NULL
)"""


async def current_version(conn: psycopg.AsyncConnection) -> int:
    await conn.execute(_CREATE_MIGRATIONS_TABLE)
    cursor = await conn.execute("SELECT coalesce(max(version), 0) FROM meterd_migrations")
    row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def migrate(conn: psycopg.AsyncConnection, *, target: int | None = None) -> list[Migration]:
    """Apply what is missing in one transaction; a fresh database gets schema.sql.

    An advisory lock makes processes that start together migrate one after another.
    """
    migrations = read_migrations(PACKAGE)
    latest = migrations[-1].version
    target = latest if target is None else target
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('meterd.migrate'))")
        version = await current_version(conn)
        if version > latest:
            raise SchemaTooNew(
                f"the database is at schema version {version}; this meterd knows up to {latest}"
            )
        pending = [m for m in migrations if version < m.version <= target]
        if version == 0 and target == latest:
            await conn.execute(read_schema(PACKAGE).encode())
        else:
            for migration in pending:
                await conn.execute(migration.sql.encode())
        async with conn.cursor() as cursor:
            await cursor.executemany(
                "INSERT INTO meterd_migrations (version, name, applied_at) VALUES (%s, %s, %s)",
                [(m.version, m.name, now_ms()) for m in pending],
            )
    return pending
