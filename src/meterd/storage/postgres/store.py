"""PostgreSQL implementation of the storage interface (psycopg 3 and its pool)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool

from meterd.aggregation import AggregationRow, Status, build_rows, with_meter_values
from meterd.config.model import EventTypeConfig, Op, WebhookConfig
from meterd.errors import IdConflict, StorageUnavailable
from meterd.idempotency import Outcome, StoredContent, resolve
from meterd.ingest import NewEvent
from meterd.invoices import PeriodInvoicing
from meterd.messages import outgoing_for
from meterd.meters.groups import GroupFilter, GroupTotal, MeterEvent, WindowTotal
from meterd.meters.values import MeterValue
from meterd.periods import BUCKET_MS, PeriodBounds, PeriodCalendar
from meterd.rollup import (
    BucketKey,
    Partial,
    Point,
    exact_decimal,
    exact_text,
    fold,
    format_exact,
)
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
from meterd.storage.postgres import corrections, group_rollups, meter_indexes
from meterd.storage.postgres import meters as meters_module
from meterd.storage.postgres.alerts import PostgresAlerts, touch_watched
from meterd.storage.postgres.batcher import IngestBatcher
from meterd.storage.postgres.console import PostgresConsole
from meterd.storage.postgres.invoicing import PostgresInvoicing, write_invoices
from meterd.storage.postgres.migrate import PACKAGE, migrate
from meterd.storage.rows import (
    SELECT_DELIVERIES,
    aggregation_from_row,
    aggregation_values,
    attempt_values,
    delivery_from_row,
    delivery_update_values,
    event_from_row,
    merge_by_type,
    select_aggregations,
)
from meterd.storage.sqlbuild import select_where
from meterd.storage.sqlfiles import read_queries
from meterd.timeutil import now_ms

T = TypeVar("T")

REBUILD_CHUNK = 50_000
DEADLOCK_RETRIES = 3
CONNECT_TIMEOUT_S = 2.0
FAIL_FAST_S = 1.0
_MS = "(timestamptz 'epoch' + ? * interval '1 millisecond')"
_TS_MS = "(extract(epoch FROM ts) * 1000)::bigint"

_SELECT_EVENTS = (
    f"SELECT seq, id, event_type, customer_id, value, metadata::text, {_TS_MS},"
    " (extract(epoch FROM received_at) * 1000)::bigint, v.voided_at"
    " FROM events LEFT JOIN event_voids v ON v.event_id = events.id"
)
_SELECT_AGGREGATIONS = select_aggregations("totals::text")


class PostgresStore(PostgresInvoicing, PostgresAlerts, Store):
    """One PostgreSQL database shared by any number of meterd processes."""

    def __init__(self, url: str, *, pool_size: int = 10, max_pending_events: int = 100_000) -> None:
        self.url = url
        self._queries = (
            read_queries(PACKAGE)
            | read_queries(PACKAGE, "corrections.sql")
            | read_queries(PACKAGE, "group_rollups.sql")
        )
        self._queries["upsert_value_rollups"] = self._queries["upsert_group_rollups"].replace(
            "payload = NULL;", "payload = group_rollups.payload || excluded.payload;"
        )
        self._console = PostgresConsole(
            read_queries(PACKAGE, "console.sql"), self._fetch, self._execute_count
        )
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[tuple[Any, ...]]] | None = None
        self._pool_size = pool_size
        self._batcher = IngestBatcher(self._insert_events, max_pending_events=max_pending_events)
        # After a failure, refuse at once for a moment instead of making every request
        # wait for a connection that cannot come: clients get their 503 fast.
        self._down_until = 0.0

    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
                await migrate(conn)
        except psycopg.OperationalError as error:
            raise StorageUnavailable(f"cannot reach PostgreSQL: {error}") from error
        self._pool = AsyncConnectionPool(
            self.url,
            min_size=1,
            max_size=self._pool_size,
            kwargs={"autocommit": True},
            configure=self._configure,
            open=False,
        )
        await self._pool.open(wait=True, timeout=10)
        self._batcher.start()

    async def _configure(self, conn: psycopg.AsyncConnection[tuple[Any, ...]]) -> None:
        """Each new connection gets its own staging tables for ingest's COPY."""
        await conn.execute(self._queries["create_staging"].encode())

    async def close(self) -> None:
        await self._batcher.stop()
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[tuple[Any, ...]]]:
        if self._pool is None:
            raise StorageUnavailable("the store is not open")
        if time.monotonic() < self._down_until:
            raise StorageUnavailable("PostgreSQL is unavailable; nothing was stored. Retry later.")
        try:
            async with self._pool.connection(timeout=CONNECT_TIMEOUT_S) as conn:
                yield conn
        except psycopg.OperationalError as error:
            # PoolTimeout, a refused connection and a server shutdown all land here.
            self._down_until = time.monotonic() + FAIL_FAST_S
            raise StorageUnavailable(f"PostgreSQL is unavailable: {error}") from error

    async def _fetch(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> list[tuple[Any, ...]]:
        async with self._connection() as conn:
            cursor = await conn.execute(sql.encode(), params)
            return await cursor.fetchall()

    async def _execute_count(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement in its own transaction; returns the rows it touched."""
        async with self._connection() as conn:
            cursor = await conn.execute(sql.encode(), params)
            return cursor.rowcount

    async def ping(self) -> None:
        await self._fetch("SELECT 1")

    # -- events -----------------------------------------------------------

    async def ingest(self, events: Sequence[NewEvent]) -> list[bool]:
        return await self._batcher.ingest(events)

    @property
    def ingest_transactions(self) -> int:
        return self._batcher.transactions

    async def _insert_events(self, jobs: list[Sequence[NewEvent]]) -> list[Outcome]:
        """One transaction: insert what is new (the unique id decides), fold it into rollups.

        Ids already stored are compared with what they hold: a job (one request)
        reusing an id for other content is refused and stores nothing, the others
        go ahead as if the jobs had run one after another.
        """
        async with self._connection() as conn, conn.transaction():
            return await self._insert_jobs(conn, jobs)

    async def _insert_jobs(
        self, conn: psycopg.AsyncConnection[tuple[Any, ...]], jobs: list[Sequence[NewEvent]]
    ) -> list[Outcome]:
        """The ingest transaction's work, in the caller's transaction."""
        events = [event for job in jobs for event in job]
        cursor = await conn.execute(self._queries["next_seqs"].encode(), (len(events),))
        seqs = [row[0] for row in await cursor.fetchall()]
        inserted = await self._insert_rows(conn, events, seqs)
        if len(inserted) == len(events):
            outcomes: list[Outcome] = [[True] * len(job) for job in jobs]
            wanted = inserted
        else:
            outcomes, wanted = await self._settle_known_ids(conn, jobs, seqs, inserted)
        points = [
            (e.customer_id, e.event_type, Point(e.ts_ms, seq, e.value))
            for e, seq in zip(events, seqs, strict=True)
            if seq in wanted
        ]
        partials = fold(points)
        await self._upsert_rollups(conn, partials)
        await group_rollups.keep_group_rollups(
            conn,
            self._queries,
            (
                (seq, e.id, e.event_type, e.customer_id, e.value, e.metadata, e.ts_ms)
                for e, seq in zip(events, seqs, strict=True)
                if seq in wanted
            ),
        )
        await corrections.note_late_events(conn, self._queries, list(partials))
        await touch_watched(conn, ((customer, meter) for customer, meter, _ in points))
        return outcomes

    async def _insert_request(
        self, conn: psycopg.AsyncConnection[tuple[Any, ...]], events: Sequence[NewEvent]
    ) -> list[bool]:
        """One request's events in the caller's transaction (an amend's replacement)."""
        [outcome] = await self._insert_jobs(conn, [events])
        if isinstance(outcome, IdConflict):
            raise outcome
        return outcome

    async def _insert_rows(
        self,
        conn: psycopg.AsyncConnection[tuple[Any, ...]],
        events: Sequence[NewEvent],
        seqs: Sequence[int],
    ) -> set[int]:
        """Insert events whose id is new (ON CONFLICT DO NOTHING); the seqs inserted.

        The rows travel by COPY (formatted in C) into a staging table, and one
        statement merges them: cheaper by far than binding eight arrays per batch.
        """
        q = self._queries
        async with conn.cursor() as staging, staging.copy(q["stage_events"].encode()) as copy:
            for seq, event in zip(seqs, events, strict=True):
                await copy.write_row(
                    (
                        seq,
                        event.id,
                        event.event_type,
                        event.customer_id,
                        exact_text(event.value),
                        None if event.metadata is None else event.metadata.decode(),
                        event.ts_ms,
                        event.received_ms,
                    )
                )
        cursor = await conn.execute(q["insert_events"].encode())
        return {row[0] for row in await cursor.fetchall()}

    async def _settle_known_ids(
        self,
        conn: psycopg.AsyncConnection[tuple[Any, ...]],
        jobs: list[Sequence[NewEvent]],
        seqs: list[int],
        inserted: set[int],
    ) -> tuple[list[Outcome], set[int]]:
        """Some ids were already taken: refuse the jobs that reuse one for other content.

        A row that ON CONFLICT DO NOTHING skipped for belongs to a committed
        transaction (the insert waited for it) or to an earlier event of this one.
        The committed ones decide, jobs run in order; rows of refused jobs are
        deleted, and an event that only lost its id to a refused job is inserted
        now (this transaction holds that id's row lock, so nobody else can take it).
        Returns the outcome per job and the seqs that end up stored.
        """
        events = [event for job in jobs for event in job]
        ours = set(seqs)
        taken = [e.id for e, seq in zip(events, seqs, strict=True) if seq not in inserted]
        cursor = await conn.execute(self._queries["events_by_id"].encode(), (taken,))
        committed = {
            id_: StoredContent(*content)
            for id_, seq, *content in await cursor.fetchall()
            if seq not in ours
        }
        outcomes = resolve(jobs, committed)
        wanted: set[int] = set()
        start = 0
        for job, outcome in zip(jobs, outcomes, strict=True):
            if not isinstance(outcome, IdConflict):
                wanted.update(s for s, new in zip(seqs[start:], outcome, strict=False) if new)
            start += len(job)
        undo = sorted(inserted - wanted)
        if undo:
            await conn.execute(self._queries["delete_events"].encode(), (undo,))
        redo = [i for i, seq in enumerate(seqs) if seq in wanted and seq not in inserted]
        if redo:
            again = await self._insert_rows(
                conn, [events[i] for i in redo], [seqs[i] for i in redo]
            )
            if len(again) != len(redo):
                raise RuntimeError("an id this transaction holds a lock on was taken")
        return outcomes, wanted

    async def _upsert_rollups(
        self, conn: psycopg.AsyncConnection[tuple[Any, ...]], partials: dict[BucketKey, Partial]
    ) -> None:
        if not partials:
            return
        q = self._queries
        async with conn.cursor() as staging, staging.copy(q["stage_rollups"].encode()) as copy:
            for (customer_id, event_type, bucket), p in partials.items():
                await copy.write_row(
                    (
                        customer_id,
                        bucket,
                        event_type,
                        p.count,
                        format_exact(p.sum),
                        exact_text(p.min),
                        exact_text(p.max),
                        p.first.ts_ms,
                        p.first.seq,
                        exact_text(p.first.value),
                        p.last.ts_ms,
                        p.last.seq,
                        exact_text(p.last.value),
                    )
                )
        await conn.execute(q["upsert_rollups"].encode())

    async def list_events(self, query: EventQuery) -> list[StoredEvent]:
        sql, params = select_where(
            _SELECT_EVENTS,
            [
                ("v.event_id IS NULL", None if query.include_voided else ()),
                ("customer_id = ?", query.customer_id),
                ("event_type = ?", query.event_type),
                (f"ts >= {_MS}", query.from_ms),
                (f"ts <= {_MS}", query.to_ms),
                (f"(ts, seq) < ({_MS}, ?)", query.before),
            ],
            order_by="ts DESC, seq DESC",
            limit=query.limit,
        )
        rows = await self._fetch(sql.replace("?", "%s"), params)
        return [event_from_row(row, _number) for row in rows]

    # -- rollups and aggregation records ----------------------------------

    async def customer_partials(self, customer_id: str, bounds: PeriodBounds) -> dict[str, Partial]:
        async with self._connection() as conn:
            return await self._customer_partials(conn, customer_id, bounds)

    async def _customer_partials(
        self, conn: psycopg.AsyncConnection[tuple[Any, ...]], customer_id: str, bounds: PeriodBounds
    ) -> dict[str, Partial]:
        params = (customer_id, bounds.start_ms // BUCKET_MS, bounds.end_ms // BUCKET_MS)
        cursor = await conn.execute(self._queries["customer_rollups"].encode(), params)
        return merge_by_type(_partials(await cursor.fetchall()))

    async def first_data_ms(self, from_ms: int | None) -> int | None:
        bucket = -(2**62) if from_ms is None else -(-from_ms // BUCKET_MS)
        [(first,)] = await self._fetch(self._queries["first_bucket_from"], (bucket,))
        return None if first is None else int(first) * BUCKET_MS

    async def watermark(self, period: str) -> int | None:
        rows = await self._fetch(self._queries["watermark"], (period,))
        return int(rows[0][0]) if rows else None

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
        q = self._queries
        if status == "closed":
            async with self._connection() as conn:
                await corrections.raise_close_horizon(
                    conn, q, period=period, until_ms=bounds.end_ms
                )
        async with self._connection() as conn, conn.transaction():
            if status == "closed":
                # Another process closing this period right now: leave it to that one.
                cursor = await conn.execute(q["try_lock_period"].encode(), (period,))
                locked = await cursor.fetchone()
                if not locked or not locked[0]:
                    return 0
                cursor = await conn.execute(q["watermark"].encode(), (period,))
                mark = await cursor.fetchone()
                if mark is not None and mark[0] >= bounds.end_ms:
                    return 0
            cursor = await conn.execute(
                q["period_rollups"].encode(),
                (bounds.start_ms // BUCKET_MS, bounds.end_ms // BUCKET_MS),
            )
            rows = build_rows(
                _partials(await cursor.fetchall()),
                period=period,
                bounds=bounds,
                ops=ops,
                status=status,
                now_ms=now_ms,
            )
            if meters:
                values = await meters_module.period_meter_values(
                    conn, q, meters=meters, bounds=bounds
                )
                rows = with_meter_values(
                    rows, values, period=period, bounds=bounds, status=status, now_ms=now_ms
                )
            written = await self._upsert_aggregations(conn, rows)
            if status == "closed":
                fresh = [row for row in rows if row.id in written]
                await self._insert_deliveries(conn, fresh, webhooks, now_ms)
                if invoicing is not None:
                    await write_invoices(
                        conn,
                        invoicing=invoicing,
                        period=period,
                        bounds=bounds,
                        rows=rows,
                        delivery_sql=q["insert_deliveries"],
                        now_ms=now_ms,
                    )
                await conn.execute(q["advance_watermark"].encode(), (period, bounds.end_ms))
        return len(written)

    async def _upsert_aggregations(
        self, conn: psycopg.AsyncConnection[tuple[Any, ...]], rows: list[AggregationRow]
    ) -> set[str]:
        if not rows:
            return set()
        columns: list[list[Any]] = [[] for _ in range(10)]
        for row in sorted(rows, key=lambda r: r.id):
            values = aggregation_values(row)
            for column, value in zip(columns, values, strict=True):
                column.append(value)
        cursor = await conn.execute(self._queries["upsert_aggregations"].encode(), columns)
        return {row[0] for row in await cursor.fetchall()}

    async def _insert_deliveries(
        self,
        conn: psycopg.AsyncConnection[tuple[Any, ...]],
        rows: list[AggregationRow],
        webhooks: Sequence[WebhookConfig],
        now: int,
    ) -> None:
        outgoing = [out for row in rows for out in outgoing_for(row, webhooks)]
        if outgoing:
            await conn.execute(
                self._queries["insert_deliveries"].encode(),
                (
                    now,
                    now,
                    now,
                    [o.message_id for o in outgoing],
                    [o.aggregation_id for o in outgoing],
                    [o.url for o in outgoing],
                    [o.payload for o in outgoing],
                ),
            )

    async def list_aggregations(self, query: AggregationQuery) -> list[AggregationRow]:
        sql, params = select_where(
            _SELECT_AGGREGATIONS,
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
        return [
            aggregation_from_row(row) for row in await self._fetch(sql.replace("?", "%s"), params)
        ]

    async def get_aggregation(self, aggregation_id: str) -> AggregationRow | None:
        rows = await self._fetch(_SELECT_AGGREGATIONS + " WHERE id = %s", (aggregation_id,))
        return aggregation_from_row(rows[0]) if rows else None

    async def rebuild_rollups(self) -> int:
        folded = 0
        last_seq = 0
        async with self._connection() as conn, conn.transaction():
            await conn.execute(self._queries["delete_rollups"].encode())
            # Group rollups are built again by `prepare_group_rollups`, in chunks.
            await group_rollups.restart_group_builds(conn, self._queries)
            while True:
                cursor = await conn.execute(
                    self._queries["events_from_seq"].encode(), (last_seq, REBUILD_CHUNK)
                )
                rows = await cursor.fetchall()
                if not rows:
                    return folded
                points = [
                    (customer, kind, Point(ts, seq, _number(value)))
                    for seq, customer, kind, value, ts in rows
                ]
                await self._upsert_rollups(conn, fold(points))
                folded += len(rows)
                last_seq = rows[-1][0]

    # -- webhook deliveries -----------------------------------------------

    async def claim_deliveries(
        self, *, now_ms: int, limit: int, lease_ms: int
    ) -> list[DeliveryRecord]:
        params = (now_ms + lease_ms, now_ms, now_ms, limit)
        rows = await self._fetch(self._queries["claim_deliveries"], params)
        return sorted(
            (delivery_from_row(row) for row in rows), key=lambda d: (d.next_attempt_ms or 0, d.id)
        )

    async def release_claims(self) -> None:
        # Other processes may have attempts in flight: their claims simply expire.
        return None

    async def record_attempt(self, outcome: AttemptOutcome) -> None:
        async with self._connection() as conn, conn.transaction():
            await conn.execute(self._queries["insert_attempt"].encode(), attempt_values(outcome))
            await conn.execute(
                self._queries["update_delivery_after_attempt"].encode(),
                delivery_update_values(outcome),
            )

    async def list_deliveries(
        self, *, status: DeliveryStatus | None, limit: int, before_id: int | None
    ) -> list[DeliveryRecord]:
        sql, params = select_where(
            SELECT_DELIVERIES,
            [("status = ?", status), ("id < ?", before_id)],
            order_by="id DESC",
            limit=limit,
        )
        return [delivery_from_row(row) for row in await self._fetch(sql.replace("?", "%s"), params)]

    async def get_delivery(
        self, delivery_id: int
    ) -> tuple[DeliveryRecord, list[AttemptRecord]] | None:
        rows = await self._fetch(self._queries["get_delivery"], (delivery_id,))
        if not rows:
            return None
        attempts = await self._fetch(self._queries["delivery_attempts"], (delivery_id,))
        return delivery_from_row(rows[0]), [AttemptRecord(*attempt) for attempt in attempts]

    async def redeliver(self, delivery_id: int, *, now_ms: int) -> DeliveryRecord | None:
        async with self._connection() as conn, conn.transaction():
            await conn.execute(self._queries["redeliver"].encode(), (now_ms, now_ms, delivery_id))
            cursor = await conn.execute(self._queries["get_delivery"].encode(), (delivery_id,))
            row = await cursor.fetchone()
        return None if row is None else delivery_from_row(row)

    # -- API keys ---------------------------------------------------------

    async def add_api_key(self, *, name: str, key_hash: str, prefix: str) -> ApiKeyRecord:
        [row] = await self._fetch(
            self._queries["insert_api_key"], (name, prefix, key_hash, now_ms())
        )
        return ApiKeyRecord(*row)

    async def list_api_keys(self) -> list[ApiKeyRecord]:
        return [ApiKeyRecord(*row) for row in await self._fetch(self._queries["list_api_keys"])]

    async def revoke_api_key(self, key_id: int) -> bool:
        async with self._connection() as conn:
            cursor = await conn.execute(
                self._queries["revoke_api_key"].encode(), (now_ms(), key_id)
            )
            return cursor.rowcount == 1

    async def active_api_key_hashes(self) -> set[str]:
        return {row[0] for row in await self._fetch(self._queries["active_api_key_hashes"])}

    # --- console and portal ------------------------------------------------

    async def add_console_session(self, session: ConsoleSessionRecord, *, now_ms: int) -> None:
        await self._console.add_session(session, now_ms)

    async def get_console_session(self, session_hash: str) -> ConsoleSessionRecord | None:
        return await self._console.get_session(session_hash)

    async def delete_console_session(self, session_hash: str) -> None:
        await self._console.delete_session(session_hash)

    async def add_portal_token(self, token: PortalTokenRecord) -> None:
        await self._console.add_portal_token(token)

    async def get_portal_token(self, token_hash: str) -> PortalTokenRecord | None:
        return await self._console.get_portal_token(token_hash)

    async def revoke_portal_tokens(
        self, *, now_ms: int, token_hash: str | None = None, customer_id: str | None = None
    ) -> int:
        return await self._console.revoke_portal_tokens(
            now_ms=now_ms, token_hash=token_hash, customer_id=customer_id
        )

    async def list_customer_ids(self, *, search: str | None, after: str, limit: int) -> list[str]:
        return await self._console.customer_ids(search=search, after=after, limit=limit)

    async def event_counts(self, *, from_ms: int, to_ms: int) -> list[tuple[int, int]]:
        return await self._console.event_counts(from_ms=from_ms, to_ms=to_ms)

    async def count_deliveries(self, status: DeliveryStatus) -> int:
        return await self._console.count_deliveries(status)

    # --- operations: metrics and backup ---

    def write_stats(self) -> WriteStats:
        return WriteStats(self._batcher.commit_sizes, self._batcher.pending_events)

    async def outbox_backlog(self) -> OutboxBacklog:
        [(pending, oldest)] = await self._fetch(self._queries["outbox_backlog"])
        return OutboxBacklog(pending, oldest)

    # --- webhook outbox: attempts recorded together ---

    async def record_attempts(self, outcomes: Sequence[AttemptOutcome]) -> None:
        async with self._connection() as conn, conn.transaction(), conn.cursor() as cursor:
            await cursor.executemany(
                self._queries["insert_attempt"].encode(), [attempt_values(o) for o in outcomes]
            )
            await cursor.executemany(
                self._queries["update_delivery_after_attempt"].encode(),
                [delivery_update_values(o) for o in outcomes],
            )

    # --- meters ---

    async def meter_events(
        self,
        *,
        event_type: str,
        from_ms: int,
        to_ms: int,
        customer_ids: Sequence[str] | None = None,
    ) -> list[MeterEvent]:
        async with self._connection() as conn:
            return await meters_module.meter_events(
                conn,
                self._queries,
                event_type=event_type,
                from_ms=from_ms,
                to_ms=to_ms,
                customer_ids=customer_ids,
            )

    async def levels_before(
        self,
        *,
        event_type: str,
        before_ms: int,
        group_by: Sequence[str],
        customer_ids: Sequence[str] | None = None,
    ) -> list[MeterEvent]:
        async with self._connection() as conn:
            return await meters_module.levels_before(
                conn,
                self._queries,
                event_type=event_type,
                before_ms=before_ms,
                group_by=group_by,
                customer_ids=customer_ids,
            )

    async def bucket_partials(
        self,
        *,
        event_type: str,
        from_ms: int,
        to_ms: int,
        customer_ids: Sequence[str] | None = None,
    ) -> list[tuple[str, int, Partial]]:
        params: dict[str, Any] = {
            "event_type": event_type,
            "from_ms": from_ms // BUCKET_MS,
            "to_ms": to_ms // BUCKET_MS,
        }
        sql = meters_module.with_customers(self._queries["bucket_partials"], customer_ids, params)
        rows = await self._fetch(sql, params)
        return [(customer, int(bucket), partial) for customer, bucket, partial in _partials(rows)]

    async def prepare_meters(self, event_types: Sequence[str]) -> list[str]:
        async with self._connection() as conn:
            return await meter_indexes.sync_meter_indexes(conn, event_types)

    async def prepare_group_rollups(self, meters: Mapping[str, EventTypeConfig]) -> int:
        async with self._connection() as conn, conn.transaction():
            await group_rollups.register_group_meters(conn, self._queries, meters)
        folded = 0
        while True:
            async with self._connection() as conn, conn.transaction():
                step = await group_rollups.build_step(conn, self._queries)
            if not step:
                return folded
            folded += step

    async def rollup_values(
        self,
        *,
        event_type: str,
        meter: EventTypeConfig,
        from_ms: int,
        to_ms: int,
        customer_ids: Sequence[str] | None = None,
    ) -> dict[str, MeterValue] | None:
        async with self._connection() as conn, conn.transaction():
            return await meters_module.rollup_values(
                conn,
                self._queries,
                event_type=event_type,
                meter=meter,
                from_ms=from_ms,
                to_ms=to_ms,
                customer_ids=customer_ids,
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
        async with self._connection() as conn:
            return await meters_module.meter_aggregate(
                conn,
                self._queries,
                event_type=event_type,
                meter=meter,
                customer_id=customer_id,
                from_ms=from_ms,
                to_ms=to_ms,
            )

    async def window_totals(
        self,
        *,
        event_type: str,
        windows: Sequence[tuple[int, int]],
        by_customer: bool,
        customer_ids: Sequence[str] | None = None,
    ) -> list[WindowTotal] | None:
        async with self._connection() as conn:
            return await meters_module.window_totals(
                conn,
                self._queries,
                event_type=event_type,
                windows=windows,
                by_customer=by_customer,
                customer_ids=customer_ids,
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
        async with self._connection() as conn:
            return await meters_module.folded_group_totals(
                conn,
                self._queries,
                event_type=event_type,
                windows=windows,
                group_by=group_by,
                by_customer=by_customer,
                customer_ids=customer_ids,
                filters=filters,
            )

    # --- corrections ---

    async def _in_transaction(
        self, work: Callable[[psycopg.AsyncConnection[tuple[Any, ...]]], Awaitable[T]]
    ) -> T:
        """`work` in a transaction of its own, again when PostgreSQL broke a deadlock
        between it and a concurrent ingest (their row locks can meet in either order)."""
        for attempt in range(DEADLOCK_RETRIES):
            try:
                async with self._connection() as conn, conn.transaction():
                    return await work(conn)
            except psycopg.errors.DeadlockDetected:
                if attempt == DEADLOCK_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    async def get_event(self, event_id: str) -> EventDetail | None:
        async with self._connection() as conn:
            return await corrections.get_event(conn, self._queries, event_id, _number)

    async def void_event(
        self, *, event_id: str, reason: str, key: KeyIdentity, now_ms: int
    ) -> Correction:
        return await self._in_transaction(
            lambda conn: corrections.void_event(
                conn,
                self._queries,
                _number,
                event_id=event_id,
                reason=reason,
                key=key,
                now_ms=now_ms,
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
        return await self._in_transaction(
            lambda conn: corrections.amend_event(
                conn,
                self._queries,
                _number,
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
            consumed, step = await self._in_transaction(
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
        async with self._connection() as conn:
            return await corrections.list_revisions(conn, self._queries, aggregation_id)

    async def api_key_by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        rows = await self._fetch(self._queries["api_key_by_hash"], (key_hash,))
        return ApiKeyRecord(*rows[0]) if rows else None


def _number(value: Decimal) -> float:
    """A stored NUMERIC back as the JSON number the client sent (ints stay ints)."""
    if value == value.to_integral_value():
        return int(value)
    return float(value)


def _partials(rows: Sequence[tuple[Any, ...]]) -> list[tuple[str, str, Partial]]:
    result = []
    for row in rows:
        customer_id, event_type, count, total = row[:4]
        first = Point(row[6], row[7], _number(row[8]))
        last = Point(row[9], row[10], _number(row[11]))
        exact_total = exact_decimal(total)
        partial = Partial(count, exact_total, _number(row[4]), _number(row[5]), first, last)
        result.append((customer_id, event_type, partial))
    return result
