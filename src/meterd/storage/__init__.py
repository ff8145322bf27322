"""Storage backends behind one interface (`meterd.storage.base.Store`)."""

from __future__ import annotations

from meterd.errors import InvalidRequest
from meterd.storage.base import Store


def open_store(database_url: str) -> Store:
    """The store for a database URL: `sqlite:///path` or `postgresql://...`."""
    if database_url.startswith("sqlite:///"):
        from meterd.storage.sqlite.store import SQLiteStore

        return SQLiteStore(database_url.removeprefix("sqlite:///"))
    if database_url.startswith(("postgresql://", "postgres://")):
        from meterd.storage.postgres.store import PostgresStore

        return PostgresStore(database_url)
    raise InvalidRequest(
        f"unsupported database URL {database_url!r}: use sqlite:///PATH or postgresql://..."
    )
