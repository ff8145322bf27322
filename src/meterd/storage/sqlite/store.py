"""SQLite implementation of the storage interface."""

from __future__ import annotations

import asyncio
import queue
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from meterd.errors import StorageUnavailable
from meterd.ingest import NewEvent
from meterd.storage.base import ApiKeyRecord, EventQuery, Store, StoredEvent
from meterd.storage.sqlfiles import read_queries
from meterd.storage.sqlite.migrate import PACKAGE, migrate
from meterd.storage.sqlite.writer import Writer
from meterd.timeutil import now_ms

T = TypeVar("T")

READERS = 4
# SQLite's default limit on bound parameters is 32766; stay well below it.
_IN_CHUNK = 900


class SQLiteStore(Store):
    """A SQLite file in WAL mode: one writer thread, a small pool of read-only readers."""

    def __init__(self, path: str, *, synchronous: str = "FULL") -> None:
        self.path = path
        self._synchronous = synchronous
        self._queries = read_queries(PACKAGE)
        self._writer: Writer | None = None
        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()

    # -- lifecycle --------------------------------------------------------

    async def open(self) -> None:
        if self._writer is not None:
            return
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = self._connect()
        try:
            migrate(conn)
        finally:
            conn.close()
        for _ in range(READERS):
            self._readers.put(self._connect(readonly=True))
        self._writer = Writer(self._connect, self._insert_events)
        self._writer.start()

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            await asyncio.to_thread(writer.stop)
        while not self._readers.empty():
            self._readers.get_nowait().close()

    def _connect(self, *, readonly: bool = False) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=10.0
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute("PRAGMA cache_size=-65536")
        conn.execute("PRAGMA temp_store=MEMORY")
        if readonly:
            conn.execute("PRAGMA query_only=1")
        return conn

    @property
    def writer(self) -> Writer:
        if self._writer is None:
            raise StorageUnavailable("the store is not open")
        return self._writer

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            with self._reader() as conn:
                return fn(conn)

        return await asyncio.to_thread(run)

    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        conn = self._readers.get()
        try:
            yield conn
        except sqlite3.OperationalError as error:
            raise StorageUnavailable(f"the database could not be read: {error}") from error
        finally:
            self._readers.put(conn)

    async def ping(self) -> None:
        await self._read(lambda conn: conn.execute("SELECT 1").fetchone())

    # -- events -----------------------------------------------------------

    async def ingest(self, events: Sequence[NewEvent]) -> list[bool]:
        return await self.writer.ingest(events)

    def _insert_events(self, conn: sqlite3.Connection, events: Sequence[NewEvent]) -> list[bool]:
        """Runs in the writer's transaction: skip known ids, insert the rest."""
        existing = _existing_ids(conn, {event.id for event in events})
        seq = conn.execute(self._queries["max_seq"]).fetchone()[0]
        stored: list[bool] = []
        rows = []
        for event in events:
            if event.id in existing:
                stored.append(False)
                continue
            existing.add(event.id)
            stored.append(True)
            seq += 1
            rows.append(
                (
                    seq,
                    event.id,
                    event.event_type,
                    event.customer_id,
                    event.value,
                    None if event.metadata is None else event.metadata.decode(),
                    event.ts_ms,
                    event.received_ms,
                )
            )
        conn.executemany(self._queries["insert_event"], rows)
        return stored

    async def list_events(self, query: EventQuery) -> list[StoredEvent]:
        sql, params = _events_sql(query)

        def fetch(conn: sqlite3.Connection) -> list[StoredEvent]:
            return [_stored_event(row) for row in conn.execute(sql, params)]

        return await self._read(fetch)

    # -- API keys ---------------------------------------------------------

    async def add_api_key(self, *, name: str, key_hash: str, prefix: str) -> ApiKeyRecord:
        sql = self._queries["insert_api_key"]

        def insert(conn: sqlite3.Connection) -> ApiKeyRecord:
            row = conn.execute(sql, (name, prefix, key_hash, now_ms())).fetchone()
            return ApiKeyRecord(*row)

        return await self.writer.call(insert)

    async def list_api_keys(self) -> list[ApiKeyRecord]:
        sql = self._queries["list_api_keys"]
        return await self._read(lambda conn: [ApiKeyRecord(*row) for row in conn.execute(sql)])

    async def revoke_api_key(self, key_id: int) -> bool:
        sql = self._queries["revoke_api_key"]
        return await self.writer.call(
            lambda conn: conn.execute(sql, (now_ms(), key_id)).rowcount == 1
        )

    async def active_api_key_hashes(self) -> set[str]:
        sql = self._queries["active_api_key_hashes"]
        return await self._read(lambda conn: {row[0] for row in conn.execute(sql)})


def _existing_ids(conn: sqlite3.Connection, ids: set[str]) -> set[str]:
    found: set[str] = set()
    pending = list(ids)
    for start in range(0, len(pending), _IN_CHUNK):
        chunk = pending[start : start + _IN_CHUNK]
        marks = ",".join("?" * len(chunk))
        found.update(
            row[0] for row in conn.execute(f"SELECT id FROM events WHERE id IN ({marks})", chunk)
        )
    return found


def _events_sql(query: EventQuery) -> tuple[str, list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if query.customer_id is not None:
        where.append("customer_id = ?")
        params.append(query.customer_id)
    if query.event_type is not None:
        where.append("event_type = ?")
        params.append(query.event_type)
    if query.from_ms is not None:
        where.append("ts >= ?")
        params.append(query.from_ms)
    if query.to_ms is not None:
        where.append("ts <= ?")
        params.append(query.to_ms)
    if query.before is not None:
        where.append("(ts, seq) < (?, ?)")
        params.extend(query.before)
    sql = "SELECT seq, id, event_type, customer_id, value, metadata, ts, received_at FROM events"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY ts DESC, seq DESC LIMIT ?"
    params.append(query.limit)
    return sql, params


def _stored_event(row: tuple[Any, ...]) -> StoredEvent:
    seq, id_, event_type, customer_id, value, metadata, ts, received = row
    return StoredEvent(
        seq=seq,
        id=id_,
        event_type=event_type,
        customer_id=customer_id,
        value=value,
        metadata=None if metadata is None else metadata.encode(),
        ts_ms=ts,
        received_ms=received,
    )
