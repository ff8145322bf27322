"""A fresh database (schema.sql) and an upgraded one (migrations) end identical."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest

from meterd.errors import SchemaTooNew
from meterd.storage.postgres import migrate as postgres
from meterd.storage.sqlfiles import read_migrations
from meterd.storage.sqlite.migrate import PACKAGE, current_version, migrate


def schema_of(conn: sqlite3.Connection) -> list[tuple[str, str, str]]:
    rows = conn.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name"
    ).fetchall()
    return [(kind, name, " ".join((sql or "").split())) for kind, name, sql in rows]


def test_fresh_and_upgraded_databases_are_identical(tmp_path: Path) -> None:
    fresh = sqlite3.connect(tmp_path / "fresh.db", isolation_level=None)
    migrate(fresh)
    expected = schema_of(fresh)
    latest = read_migrations(PACKAGE)[-1].version
    for start in range(0, latest):
        upgraded = sqlite3.connect(tmp_path / f"from-{start}.db", isolation_level=None)
        migrate(upgraded, target=start)
        assert current_version(upgraded) == start
        applied = migrate(upgraded)
        assert [m.version for m in applied] == list(range(start + 1, latest + 1))
        assert schema_of(upgraded) == expected, f"upgrading from version {start}"
        assert current_version(upgraded) == latest


def test_migrate_is_idempotent(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "db", isolation_level=None)
    migrate(conn)
    assert migrate(conn) == []


def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "db", isolation_level=None)
    migrate(conn)
    conn.execute("INSERT INTO meterd_migrations VALUES (999, 'future', 0)")
    with pytest.raises(SchemaTooNew):
        migrate(conn)


async def postgres_schema(conn: psycopg.AsyncConnection) -> list[tuple[str, ...]]:
    columns = await conn.execute(
        "SELECT table_name, column_name, data_type, is_nullable, coalesce(column_default, '')"
        " FROM information_schema.columns WHERE table_schema = current_schema()"
        " ORDER BY table_name, column_name"
    )
    indexes = await conn.execute(
        "SELECT tablename, indexname, indexdef FROM pg_indexes"
        " WHERE schemaname = current_schema() ORDER BY indexname"
    )
    # Storage parameters (the rollups' fill factor) too.
    options = await conn.execute(
        "SELECT relname, coalesce(array_to_string(reloptions, ','), '') FROM pg_class"
        " WHERE relnamespace = current_schema()::regnamespace AND relkind = 'r'"
        " ORDER BY relname"
    )
    rows = [*await columns.fetchall(), *await indexes.fetchall(), *await options.fetchall()]
    return [tuple(map(str, row)) for row in rows]


async def test_postgres_fresh_and_upgraded_are_identical(postgres_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        await postgres.migrate(conn)
        expected = await postgres_schema(conn)
        assert await postgres.current_version(conn) == len(read_migrations(postgres.PACKAGE))
        assert await postgres.migrate(conn) == []
        latest = read_migrations(postgres.PACKAGE)[-1].version
        for start in range(0, latest):
            # Each upgrade starts from an empty schema.
            tables = await conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            )
            for (table,) in await tables.fetchall():
                await conn.execute(f"DROP TABLE {table} CASCADE".encode())
            await conn.execute("DROP SEQUENCE IF EXISTS events_seq")
            await postgres.migrate(conn, target=start)
            applied = await postgres.migrate(conn)
            assert [m.version for m in applied] == list(range(start + 1, latest + 1))
            assert await postgres_schema(conn) == expected
