"""Storage backends behind one interface (`meterd.storage.base.Store`)."""

from __future__ import annotations

from meterd.errors import InvalidRequest
from meterd.storage.base import Store


def open_store(
    database_url: str, *, max_pending_events: int = 100_000, ingest_process: bool = False
) -> Store:
    """The store for a database URL: `sqlite:///path` or `postgresql://...`.

    `max_pending_events` bounds the events waiting for a commit; past it, ingest
    answers 503 (Overloaded) instead of queueing without limit. `ingest_process`
    (SQLite only) runs ingest transactions in a process of their own.
    """
    if database_url.startswith("sqlite:///"):
        from meterd.storage.sqlite.store import SQLiteStore

        path = database_url.removeprefix("sqlite:///")
        return SQLiteStore(
            path, max_pending_events=max_pending_events, ingest_process=ingest_process
        )
    if database_url.startswith(("postgresql://", "postgres://")):
        from meterd.storage.postgres.store import PostgresStore

        return PostgresStore(database_url, max_pending_events=max_pending_events)
    raise InvalidRequest(
        f"unsupported database URL {database_url!r}: use sqlite:///PATH or postgresql://..."
    )
