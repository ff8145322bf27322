"""Load a backend's SQL files: its schema, numbered migrations and named queries."""

from __future__ import annotations

import re
from importlib import resources
from typing import NamedTuple

_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_QUERY_HEADER = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


class Migration(NamedTuple):
    version: int
    name: str
    sql: str


def read_schema(package: str) -> str:
    """The full current schema (`sql/schema.sql`), used for fresh databases."""
    return (resources.files(package) / "sql" / "schema.sql").read_text()


def read_migrations(package: str) -> list[Migration]:
    """Every `sql/migrations/NNNN_name.sql`, in version order."""
    folder = resources.files(package) / "sql" / "migrations"
    migrations = []
    for entry in folder.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            migrations.append(Migration(int(match[1]), match[2], entry.read_text()))
    migrations.sort()
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"{package}: migrations must be numbered 1..n, found {versions}")
    return migrations


def read_queries(package: str, filename: str = "queries.sql") -> dict[str, str]:
    """Named queries from `sql/<filename>`, each introduced by `-- name: NAME`."""
    text = (resources.files(package) / "sql" / filename).read_text()
    parts = _QUERY_HEADER.split(text)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}
