"""The storage interface every backend implements, and the records it returns.

Handlers and domain code talk only to `Store`; SQLite and PostgreSQL each
implement it. Every method that writes is one transaction of its own, so a
2xx answer always means "committed".
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import msgspec

from meterd.ingest import NewEvent


class StoredEvent(msgspec.Struct, frozen=True):
    seq: int
    id: str
    event_type: str
    customer_id: str
    value: float
    metadata: bytes | None
    ts_ms: int
    received_ms: int


class EventQuery(msgspec.Struct, frozen=True):
    """Filters for listing raw events, newest (by event time) first."""

    customer_id: str | None = None
    event_type: str | None = None
    from_ms: int | None = None  # inclusive
    to_ms: int | None = None  # inclusive
    limit: int = 100
    # Keyset cursor: only events strictly older than (ts_ms, seq).
    before: tuple[int, int] | None = None


class ApiKeyRecord(msgspec.Struct, frozen=True):
    id: int
    name: str
    prefix: str
    created_ms: int
    revoked_ms: int | None


class Store(abc.ABC):
    """A meterd database."""

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect, apply pending migrations and start background writers."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Finish pending writes and release connections."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise StorageUnavailable unless the database answers a query."""

    @abc.abstractmethod
    async def ingest(self, events: Sequence[NewEvent]) -> list[bool]:
        """Store events atomically, skipping ids already stored.

        Returns, per event, True if it was stored and False if it was a
        duplicate (of a stored event or of an earlier event in `events`).
        """

    @abc.abstractmethod
    async def list_events(self, query: EventQuery) -> list[StoredEvent]:
        """Raw events matching `query`, newest first, then latest arrival first."""

    @abc.abstractmethod
    async def add_api_key(self, *, name: str, key_hash: str, prefix: str) -> ApiKeyRecord:
        """Record a new API key by its hash."""

    @abc.abstractmethod
    async def list_api_keys(self) -> list[ApiKeyRecord]:
        """All API keys, revoked ones included."""

    @abc.abstractmethod
    async def revoke_api_key(self, key_id: int) -> bool:
        """Revoke a key; False if no active key has that id."""

    @abc.abstractmethod
    async def active_api_key_hashes(self) -> set[str]:
        """Hashes of every key that is not revoked."""
