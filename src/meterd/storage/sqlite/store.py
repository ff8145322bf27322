"""SQLite implementation of the storage interface."""

from __future__ import annotations

import asyncio
import queue
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from meterd.aggregation import AggregationRow, Status
from meterd.config.model import EventTypeConfig, Op, WebhookConfig
from meterd.errors import IdConflict, StorageUnavailable
from meterd.idempotency import Outcome
from meterd.ingest import NewEvent
from meterd.invoices import PeriodInvoicing
from meterd.meters.groups import GroupFilter, GroupTotal, MeterEvent, WindowTotal
from meterd.meters.values import MeterValue
from meterd.periods import BUCKET_MS, PeriodBounds, PeriodCalendar
from meterd.rollup import Partial, Point, fold
from meterd.storage.base import (
    AggregationQuery,
    Amendment,
    ApiKeyRecord,
    AttemptOutcome,
    AttemptRecord,
    ConsoleSessionRecord,
    Correction,
    DeliveryRecord,
    DeliveryStatus,
    EventDetail,
    EventQuery,
    KeyIdentity,
    OutboxBacklog,
    PortalTokenRecord,
    Revision,
    Store,
    StoredEvent,
    WriteStats,
)
from meterd.storage.commitsizes import CommitSizes
from meterd.storage.rows import (
    SELECT_DELIVERIES,
    aggregation_from_row,
    attempt_values,
    delivery_from_row,
    delivery_update_values,
    event_from_row,
    merge_by_type,
    select_aggregations,
)
from meterd.storage.sqlbuild import select_where
from meterd.storage.sqlfiles import read_queries
from meterd.storage.sqlite import (
    aggregations,
    console,
    corrections,
    daily,
    group_rollups,
    meter_indexes,
    meters,
    rollups,
)
from meterd.storage.sqlite.alerts import SQLiteAlerts
from meterd.storage.sqlite.connect import connect
from meterd.storage.sqlite.event_insert import insert_events
from meterd.storage.sqlite.ingest_process import IngestProcess
from meterd.storage.sqlite.invoicing import SQLiteInvoicing
from meterd.storage.sqlite.migrate import PACKAGE, migrate
from meterd.storage.sqlite.writer import Writer
from meterd.timeutil import now_ms

T = TypeVar("T")

READERS = 4
# Events folded per statement batch by `rebuild_rollups`.
REBUILD_CHUNK = 50_000


class SQLiteStore(SQLiteInvoicing, SQLiteAlerts, Store):
    """A SQLite file in WAL mode: one writer thread, a small pool of read-only readers."""

    def __init__(
        self,
        path: str,
        *,
        synchronous: str = "FULL",
        max_pending_events: int = 100_000,
        ingest_process: bool = False,
    ) -> None:
        """`ingest_process`: run ingest transactions in a process of their own
        (`storage/sqlite/ingest_process.py`), which `meterd serve` does."""
        self.path = path
        self._synchronous = synchronous
        self._max_pending = max_pending_events
        self._ingest_process = ingest_process
        self._queries = store_queries()
        self._console = console.console_queries(PACKAGE)
        self._writer: Writer | None = None
        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()

    # -- lifecycle --------------------------------------------------------

    async def open(self) -> None:
        if self._writer is not None:
            return
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = self._connect()
            try:
                migrate(conn)
            finally:
                conn.close()
        except (OSError, sqlite3.Error) as error:
            # A read-only disk or file, a missing directory, a file that is not SQLite.
            raise StorageUnavailable(
                f"cannot open the SQLite database {self.path}: {error}"
            ) from error
        for _ in range(READERS):
            self._readers.put(self._connect(readonly=True))
        process = (
            IngestProcess(self.path, synchronous=self._synchronous, queries=self._queries)
            if self._ingest_process
            else None
        )
        writer = Writer(
            self._connect,
            self._insert_events,
            max_pending_events=self._max_pending,
            process=process,
        )
        try:
            writer.start()  # with a process: blocks until it has opened the file
        except BaseException:
            self._close_readers()
            raise
        self._writer = writer

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            await asyncio.to_thread(writer.stop)
        self._close_readers()

    def _close_readers(self) -> None:
        while not self._readers.empty():
            self._readers.get_nowait().close()

    def _connect(self, *, readonly: bool = False) -> sqlite3.Connection:
        return connect(self.path, synchronous=self._synchronous, readonly=readonly)

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

    async def _read_snapshot(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn` in one read transaction: every query it runs sees the same state."""

        def read(conn: sqlite3.Connection) -> T:
            conn.execute("BEGIN")
            try:
                return fn(conn)
            finally:
                if conn.in_transaction:  # a read: ending the snapshot, nothing to keep
                    conn.execute("ROLLBACK")

        return await self._read(read)

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

    @property
    def ingest_transactions(self) -> int:
        return 0 if self._writer is None else self._writer.ingest_transactions

    def _insert_events(
        self, conn: sqlite3.Connection, jobs: Sequence[Sequence[NewEvent]]
    ) -> list[Outcome]:
        return insert_events(conn, self._queries, jobs)

    def _insert_request(self, conn: sqlite3.Connection, events: Sequence[NewEvent]) -> list[bool]:
        """One request's events in the caller's transaction (an amend's replacement)."""
        [outcome] = self._insert_events(conn, [events])
        if isinstance(outcome, IdConflict):
            raise outcome
        return outcome

    async def list_events(self, query: EventQuery) -> list[StoredEvent]:
        sql, params = _events_sql(query)

        def fetch(conn: sqlite3.Connection) -> list[StoredEvent]:
            return [event_from_row(row) for row in conn.execute(sql, params)]

        return await self._read(fetch)

    # -- rollups and aggregation records ----------------------------------

    async def customer_partials(self, customer_id: str, bounds: PeriodBounds) -> dict[str, Partial]:
        def read(conn: sqlite3.Connection) -> dict[str, Partial]:
            # One snapshot: the compaction mark and the rows it describes.
            conn.execute("BEGIN")
            try:
                return self._customer_partials(conn, customer_id, bounds)
            finally:
                if conn.in_transaction:  # a read: ending the snapshot, nothing to keep
                    conn.execute("ROLLBACK")

        return await self._read(read)

    def _customer_partials(
        self, conn: sqlite3.Connection, customer_id: str, bounds: PeriodBounds
    ) -> dict[str, Partial]:
        q = self._queries
        params = daily.span_params(customer_id, bounds, daily.days_until(conn, q))
        try:
            return rollups.folded_partials(
                conn.execute(q["customer_totals"], params).fetchall(),
                conn.execute(q["customer_firsts"], params).fetchall(),
                conn.execute(q["customer_lasts"], params).fetchall(),
            )
        except sqlite3.OperationalError as error:
            if "integer overflow" not in str(error):
                raise
        # Integer totals beyond 2**63: fold in Python, where integers do not overflow.
        rows = conn.execute(q["customer_rollups"], params)
        return merge_by_type(rollups.partial_rows(rows))

    async def first_data_ms(self, from_ms: int | None) -> int | None:
        bucket = None if from_ms is None else -(-from_ms // BUCKET_MS)
        sql = self._queries["first_bucket_from"]
        row = await self._read(lambda conn: conn.execute(sql, (bucket or -(2**62),)).fetchone())
        return None if row[0] is None else int(row[0]) * BUCKET_MS

    async def watermark(self, period: str) -> int | None:
        sql = self._queries["watermark"]
        row = await self._read(lambda conn: conn.execute(sql, (period,)).fetchone())
        return None if row is None else int(row[0])

    async def write_period(
        self,
        *,
        period: str,
        bounds: PeriodBounds,
        ops: dict[str, Op],
        status: Status,
        now_ms: int,
        webhooks: Sequence[WebhookConfig] = (),
        invoicing: PeriodInvoicing | None = None,
        meters: Mapping[str, EventTypeConfig] | None = None,
    ) -> int:
        return await self.writer.call(
            lambda conn: aggregations.write_period(
                conn,
                self._queries,
                period=period,
                bounds=bounds,
                ops=ops,
                status=status,
                now_ms=now_ms,
                webhooks=webhooks,
                invoicing=invoicing,
                meters=meters or {},
            )
        )

    async def list_aggregations(self, query: AggregationQuery) -> list[AggregationRow]:
        sql, params = _aggregations_sql(query)
        return await self._read(
            lambda conn: [aggregation_from_row(row) for row in conn.execute(sql, params)]
        )

    async def get_aggregation(self, aggregation_id: str) -> AggregationRow | None:
        sql = select_aggregations() + " WHERE id = ?"
        row = await self._read(lambda conn: conn.execute(sql, (aggregation_id,)).fetchone())
        return None if row is None else aggregation_from_row(row)

    async def rebuild_rollups(self) -> int:
        return await self.writer.call(self._rebuild_rollups)

    async def compact_rollups(self, before_ms: int) -> int:
        days = 0
        while step := await self.writer.call(
            lambda conn: daily.compact_step(conn, self._queries, before_ms)
        ):
            days += step
        return days

    def _rebuild_rollups(self, conn: sqlite3.Connection) -> int:
        # The daily rows are folded again from the new rollups by the next compaction.
        for name in ("delete_rollups", "delete_daily_rollups", "reset_compaction"):
            conn.execute(self._queries[name])
        # Group rollups are built again by `prepare_group_rollups`, in chunks.
        group_rollups.restart_group_builds(conn, self._queries)
        folded = 0
        last_seq = 0
        while True:
            rows = conn.execute(
                self._queries["events_from_seq"], (last_seq, REBUILD_CHUNK)
            ).fetchall()
            if not rows:
                return folded
            points = [
                (customer, kind, Point(ts, seq, value)) for seq, customer, kind, value, ts in rows
            ]
            rollups.upsert_partials(conn, self._queries["upsert_rollup"], fold(points))
            folded += len(rows)
            last_seq = rows[-1][0]

    # -- webhook deliveries -----------------------------------------------

    async def claim_deliveries(
        self, *, now_ms: int, limit: int, lease_ms: int
    ) -> list[DeliveryRecord]:
        sql = self._queries["claim_deliveries"]
        params = (now_ms + lease_ms, now_ms, now_ms, limit)
        rows = await self.writer.call(lambda conn: conn.execute(sql, params).fetchall())
        return sorted(
            (delivery_from_row(row) for row in rows), key=lambda d: (d.next_attempt_ms or 0, d.id)
        )

    async def release_claims(self) -> None:
        sql = self._queries["release_claims"]
        await self.writer.call(lambda conn: conn.execute(sql))

    async def record_attempt(self, outcome: AttemptOutcome) -> None:
        def record(conn: sqlite3.Connection) -> None:
            conn.execute(self._queries["insert_attempt"], attempt_values(outcome))
            conn.execute(
                self._queries["update_delivery_after_attempt"], delivery_update_values(outcome)
            )

        await self.writer.call(record)

    async def list_deliveries(
        self, *, status: DeliveryStatus | None, limit: int, before_id: int | None
    ) -> list[DeliveryRecord]:
        sql, params = select_where(
            SELECT_DELIVERIES,
            [("status = ?", status), ("id < ?", before_id)],
            order_by="id DESC",
            limit=limit,
        )
        return await self._read(
            lambda conn: [delivery_from_row(row) for row in conn.execute(sql, params)]
        )

    async def get_delivery(
        self, delivery_id: int
    ) -> tuple[DeliveryRecord, list[AttemptRecord]] | None:
        def read(conn: sqlite3.Connection) -> tuple[DeliveryRecord, list[AttemptRecord]] | None:
            row = conn.execute(self._queries["get_delivery"], (delivery_id,)).fetchone()
            if row is None:
                return None
            attempts = conn.execute(self._queries["delivery_attempts"], (delivery_id,))
            return delivery_from_row(row), [AttemptRecord(*attempt) for attempt in attempts]

        return await self._read(read)

    async def redeliver(self, delivery_id: int, *, now_ms: int) -> DeliveryRecord | None:
        def redeliver(conn: sqlite3.Connection) -> DeliveryRecord | None:
            conn.execute(self._queries["redeliver"], (now_ms, now_ms, delivery_id))
            row = conn.execute(self._queries["get_delivery"], (delivery_id,)).fetchone()
            return None if row is None else delivery_from_row(row)

        return await self.writer.call(redeliver)

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

    # --- console and portal ------------------------------------------------

    async def add_console_session(self, session: ConsoleSessionRecord, *, now_ms: int) -> None:
        await self.writer.call(
            lambda conn: console.add_session(conn, self._console, session, now_ms)
        )

    async def get_console_session(self, session_hash: str) -> ConsoleSessionRecord | None:
        return await self._read(lambda conn: console.get_session(conn, self._console, session_hash))

    async def delete_console_session(self, session_hash: str) -> None:
        sql = self._console["delete_session"]
        await self.writer.call(lambda conn: conn.execute(sql, (session_hash,)))

    async def add_portal_token(self, token: PortalTokenRecord) -> None:
        await self.writer.call(lambda conn: console.add_portal_token(conn, self._console, token))

    async def get_portal_token(self, token_hash: str) -> PortalTokenRecord | None:
        return await self._read(
            lambda conn: console.get_portal_token(conn, self._console, token_hash)
        )

    async def revoke_portal_tokens(
        self, *, now_ms: int, token_hash: str | None = None, customer_id: str | None = None
    ) -> int:
        return await self.writer.call(
            lambda conn: console.revoke_portal_tokens(
                conn, self._console, now_ms=now_ms, token_hash=token_hash, customer_id=customer_id
            )
        )

    async def list_customer_ids(self, *, search: str | None, after: str, limit: int) -> list[str]:
        return await self._read(
            lambda conn: console.customer_ids(
                conn, self._console, search=search, after=after, limit=limit
            )
        )

    async def event_counts(self, *, from_ms: int, to_ms: int) -> list[tuple[int, int]]:
        return await self._read(
            lambda conn: console.event_counts(conn, self._console, from_ms=from_ms, to_ms=to_ms)
        )

    async def count_deliveries(self, status: DeliveryStatus) -> int:
        return await self._read(lambda conn: console.count_deliveries(conn, self._console, status))

    # --- operations: metrics and backup ---

    def write_stats(self) -> WriteStats:
        writer = self._writer
        if writer is None:
            return WriteStats(CommitSizes(), 0)
        return WriteStats(writer.commit_sizes, writer.pending_events)

    async def outbox_backlog(self) -> OutboxBacklog:
        sql = self._queries["outbox_backlog"]
        pending, oldest = await self._read(lambda conn: conn.execute(sql).fetchone())
        return OutboxBacklog(pending, oldest)

    # --- webhook outbox: attempts recorded together ---

    async def record_attempts(self, outcomes: Sequence[AttemptOutcome]) -> None:
        def record(conn: sqlite3.Connection) -> None:
            conn.executemany(self._queries["insert_attempt"], map(attempt_values, outcomes))
            conn.executemany(
                self._queries["update_delivery_after_attempt"],
                map(delivery_update_values, outcomes),
            )

        await self.writer.call(record)

    # --- meters ---

    async def meter_events(
        self,
        *,
        event_type: str,
        from_ms: int,
        to_ms: int,
        customer_ids: Sequence[str] | None = None,
    ) -> list[MeterEvent]:
        return await self._read(
            lambda conn: meters.meter_events(
                conn,
                self._queries,
                event_type=event_type,
                from_ms=from_ms,
                to_ms=to_ms,
                customer_ids=customer_ids,
            )
        )

    async def levels_before(
        self,
        *,
        event_type: str,
        before_ms: int,
        group_by: Sequence[str],
        customer_ids: Sequence[str] | None = None,
    ) -> list[MeterEvent]:
        return await self._read(
            lambda conn: meters.levels_before(
                conn,
                self._queries,
                event_type=event_type,
                before_ms=before_ms,
                group_by=group_by,
                customer_ids=customer_ids,
            )
        )

    async def bucket_partials(
        self,
        *,
        event_type: str,
        from_ms: int,
        to_ms: int,
        customer_ids: Sequence[str] | None = None,
    ) -> list[tuple[str, int, Partial]]:
        return await self._read(
            lambda conn: meters.bucket_partials(
                conn,
                self._queries,
                event_type=event_type,
                from_ms=from_ms,
                to_ms=to_ms,
                customer_ids=customer_ids,
            )
        )

    async def prepare_meters(self, event_types: Sequence[str]) -> list[str]:
        return await self.writer.call(
            lambda conn: meter_indexes.sync_meter_indexes(conn, event_types)
        )

    async def rollup_values(
        self,
        *,
        event_type: str,
        meter: EventTypeConfig,
        from_ms: int,
        to_ms: int,
        customer_ids: Sequence[str] | None = None,
    ) -> dict[str, MeterValue] | None:
        return await self._read_snapshot(
            lambda conn: meters.rollup_values(
                conn,
                self._queries,
                event_type=event_type,
                meter=meter,
                from_ms=from_ms,
                to_ms=to_ms,
                customer_ids=customer_ids,
            )
        )

    async def meter_aggregate(
        self,
        *,
        event_type: str,
        meter: EventTypeConfig,
        customer_id: str,
        from_ms: int,
        to_ms: int,
    ) -> MeterValue | None:
        return await self._read(
            lambda conn: meters.meter_aggregate(
                conn,
                self._queries,
                event_type=event_type,
                meter=meter,
                customer_id=customer_id,
                from_ms=from_ms,
                to_ms=to_ms,
            )
        )

    async def window_totals(
        self,
        *,
        event_type: str,
        windows: Sequence[tuple[int, int]],
        by_customer: bool,
        customer_ids: Sequence[str] | None = None,
    ) -> list[WindowTotal] | None:
        return await self._read_snapshot(
            lambda conn: meters.window_totals(
                conn,
                self._queries,
                event_type=event_type,
                windows=windows,
                by_customer=by_customer,
                customer_ids=customer_ids,
            )
        )

    async def group_totals(
        self,
        *,
        event_type: str,
        windows: Sequence[tuple[int, int]],
        group_by: Sequence[str],
        by_customer: bool,
        customer_ids: Sequence[str] | None = None,
        filters: Mapping[str, GroupFilter] | None = None,
    ) -> list[GroupTotal] | None:
        # One snapshot: the build state, the compaction mark and the rows they describe.
        return await self._read_snapshot(
            lambda conn: meters.folded_group_totals(
                conn,
                self._queries,
                event_type=event_type,
                windows=windows,
                group_by=group_by,
                by_customer=by_customer,
                customer_ids=customer_ids,
                filters=filters,
            )
        )

    async def prepare_group_rollups(self, meters: Mapping[str, EventTypeConfig]) -> int:
        await self.writer.call(
            lambda conn: group_rollups.register_group_meters(conn, self._queries, meters)
        )
        folded = 0
        while step := await self.writer.call(
            lambda conn: group_rollups.build_step(
                conn, self._queries, daily.days_until(conn, self._queries)
            )
        ):
            folded += step
        return folded

    # --- corrections ---

    async def get_event(self, event_id: str) -> EventDetail | None:
        return await self._read(lambda conn: corrections.get_event(conn, self._queries, event_id))

    async def void_event(
        self, *, event_id: str, reason: str, key: KeyIdentity, now_ms: int
    ) -> Correction:
        return await self.writer.call(
            lambda conn: corrections.void_event(
                conn, self._queries, event_id=event_id, reason=reason, key=key, now_ms=now_ms
            )
        )

    async def amend_event(
        self,
        *,
        event_id: str,
        replacement: NewEvent,
        reason: str,
        key: KeyIdentity,
        idempotency_key: str | None,
        now_ms: int,
    ) -> Amendment:
        return await self.writer.call(
            lambda conn: corrections.amend_event(
                conn,
                self._queries,
                self._insert_request,
                event_id=event_id,
                replacement=replacement,
                reason=reason,
                key=key,
                idempotency_key=idempotency_key,
                now_ms=now_ms,
            )
        )

    async def settle_late_changes(
        self,
        *,
        calendars: Mapping[str, PeriodCalendar],
        ops: Mapping[str, Op],
        webhooks: Sequence[WebhookConfig],
        now_ms: int,
        invoicing: PeriodInvoicing | None = None,
        meters: Mapping[str, EventTypeConfig] | None = None,
    ) -> int:
        written = 0
        while True:
            consumed, step = await self.writer.call(
                lambda conn: corrections.settle_step(
                    conn,
                    self._queries,
                    self._customer_partials,
                    calendars=calendars,
                    ops=ops,
                    webhooks=webhooks,
                    now_ms=now_ms,
                    invoicing=invoicing,
                    meters=meters,
                )
            )
            written += step
            if not consumed:
                return written

    async def list_revisions(self, aggregation_id: str) -> list[Revision]:
        return await self._read(
            lambda conn: corrections.list_revisions(conn, self._queries, aggregation_id)
        )

    async def api_key_by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        sql = self._queries["api_key_by_hash"]
        row = await self._read(lambda conn: conn.execute(sql, (key_hash,)).fetchone())
        return None if row is None else ApiKeyRecord(*row)


def store_queries() -> dict[str, str]:
    """The named queries, with those built from others (daily upsert, customer span)."""
    queries = (
        read_queries(PACKAGE)
        | read_queries(PACKAGE, "corrections.sql")
        | read_queries(PACKAGE, "group_rollups.sql")
    )
    queries["upsert_daily_rollup"] = daily.upsert_sql(queries["upsert_rollup"])
    for name in ("customer_totals", "customer_firsts", "customer_lasts", "customer_rollups"):
        queries[name] = queries["customer_span"] + "\n" + queries[name]
    return queries


def _events_sql(query: EventQuery) -> tuple[str, list[Any]]:
    return select_where(
        "SELECT seq, id, event_type, customer_id, value, metadata, ts, received_at, voided_at"
        " FROM events LEFT JOIN event_voids v ON v.event_id = events.id",
        [
            ("v.event_id IS NULL", None if query.include_voided else ()),
            ("customer_id = ?", query.customer_id),
            ("event_type = ?", query.event_type),
            ("ts >= ?", query.from_ms),
            ("ts <= ?", query.to_ms),
            ("(ts, seq) < (?, ?)", query.before),
        ],
        order_by="ts DESC, seq DESC",
        limit=query.limit,
    )


def _aggregations_sql(query: AggregationQuery) -> tuple[str, list[Any]]:
    return select_where(
        select_aggregations(),
        [
            ("customer_id = ?", query.customer_id),
            ("period = ?", query.period),
            ("period_start >= ?", query.from_ms),
            ("period_start <= ?", query.to_ms),
            ("(period_start, id) < (?, ?)", query.before),
        ],
        order_by="period_start DESC, id DESC",
        limit=query.limit,
    )
