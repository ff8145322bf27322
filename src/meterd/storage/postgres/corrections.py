"""Corrections and late events in PostgreSQL: voids, amendments, the record of what
changed in closed periods, and the revisions it leads to (DESIGN.md section 8).

Several processes share the database: unique keys decide between corrections that
race on one event, row locks serialise revisions of one record, late changes are
claimed with SKIP LOCKED, and a close first raises its period's horizon behind a
barrier that waits for in-flight ingest, so an event the close cannot see is
always noted as a late change.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import msgspec

from meterd.aggregation import merge_meter_values, totals_of
from meterd.config.model import EventTypeConfig, Op, WebhookConfig
from meterd.errors import Conflict, NotFound
from meterd.ingest import NewEvent
from meterd.invoices import PeriodInvoicing
from meterd.messages import Outgoing
from meterd.periods import BUCKET_MS, PeriodBounds, PeriodCalendar
from meterd.revisions import (
    ANY_PERIOD,
    SETTLE_BATCH,
    TOUCHED_BATCH,
    LevelCarry,
    LevelEnd,
    RevisionPlan,
    Touched,
    change_periods,
    customer_values,
    plan_revision,
    time_weighted,
    touched_records,
)
from meterd.rollup import BucketKey, Partial
from meterd.storage.base import (
    Amendment,
    Correction,
    EventDetail,
    KeyIdentity,
    Revision,
    StoredEvent,
)
from meterd.storage.postgres.invoicing import write_adjustments, write_invoices
from meterd.storage.postgres.meters import period_meter_values, with_type
from meterd.storage.postgres.recompute import Connection, recompute_rollups
from meterd.storage.rows import (
    aggregation_from_row,
    aggregation_values,
    decode_totals,
    encode_totals,
    event_from_row,
    select_aggregations,
)
from meterd.storage.voids import (
    correction_from_row,
    repeated_amendment,
    void_again,
    void_values,
    voided_conflict,
)

InsertEvents = Callable[[Connection, Sequence[NewEvent]], Awaitable[list[bool]]]
CustomerPartials = Callable[[Connection, str, PeriodBounds], Awaitable[dict[str, Partial]]]
NumberOf = Callable[[Any], float]

# The lock and the read are two statements: under READ COMMITTED a statement that waited
# for a row lock re-reads only the locked row, while its subqueries (the latest revision)
# keep the snapshot taken before the wait. Read in one statement, a process that waited
# for another's revision n+1 would see revision n and write n+1 again.
_LOCK_RECORD = "SELECT 1 FROM aggregations WHERE id = %s FOR UPDATE"
_READ_RECORD = select_aggregations("totals::text") + " WHERE id = %s"


async def note_late_events(
    conn: Connection, queries: Mapping[str, str], keys: Sequence[BucketKey]
) -> None:
    """In an ingest transaction: note stored (customer, bucket) pairs before a close horizon."""
    pairs = sorted({(customer_id, bucket) for customer_id, _, bucket in keys})
    if pairs:
        await conn.execute(
            queries["note_late_events"].encode(),
            ([customer for customer, _ in pairs], [bucket for _, bucket in pairs]),
        )


async def raise_close_horizon(
    conn: Connection, queries: Mapping[str, str], *, period: str, until_ms: int
) -> None:
    """Before a close reads its rollups: from now on ingest notes events before
    `until_ms` as late, and every ingest transaction that could not see that has ended."""
    async with conn.transaction():
        await conn.execute(queries["raise_close_horizon"].encode(), (period, until_ms))
        await conn.execute(queries["ingest_barrier"].encode())


async def get_event(
    conn: Connection, queries: Mapping[str, str], event_id: str, number: NumberOf
) -> EventDetail | None:
    event = await _event(conn, queries, event_id, number)
    if event is None:
        return None
    voided = await _correction(conn, queries["void_of_event"], event_id)
    amends = await _correction(conn, queries["void_replaced_by"], event_id)
    if voided is not None:
        event = msgspec.structs.replace(event, voided_ms=voided.voided_ms)
    return EventDetail(event=event, voided=voided, amends=amends)


async def void_event(
    conn: Connection,
    queries: Mapping[str, str],
    number: NumberOf,
    *,
    event_id: str,
    reason: str,
    key: KeyIdentity,
    now_ms: int,
) -> Correction:
    """In the caller's transaction."""
    event = await _event(conn, queries, event_id, number)
    if event is None:
        raise NotFound(f"no event has id {event_id!r}")
    correction = Correction(event_id, now_ms, reason, key)
    if not await _insert_void(conn, queries, correction, None):
        earlier = await _correction(conn, queries["void_of_event"], event_id)
        assert earlier is not None
        return void_again(event_id, earlier)
    await _take_out(conn, queries, event)
    return correction


async def amend_event(
    conn: Connection,
    queries: Mapping[str, str],
    number: NumberOf,
    insert_events: InsertEvents,
    *,
    event_id: str,
    replacement: NewEvent,
    reason: str,
    key: KeyIdentity,
    idempotency_key: str | None,
    now_ms: int,
) -> Amendment:
    """In the caller's transaction."""
    event = await _event(conn, queries, event_id, number)
    if event is None:
        raise NotFound(f"no event has id {event_id!r}")
    correction = Correction(event_id, now_ms, reason, key, replacement.id)
    if not await _insert_void(conn, queries, correction, idempotency_key):
        if idempotency_key is not None:
            earlier = await _correction(conn, queries["void_by_idempotency_key"], idempotency_key)
            if earlier is not None:
                replaced_by = repeated_amendment(event_id, earlier)
                replacement_event = await _event(conn, queries, replaced_by, number)
                assert replacement_event is not None
                return Amendment(event_id, replacement_event, earlier, duplicate=True)
        raise voided_conflict(event_id)
    if await insert_events(conn, [replacement]) != [True]:
        raise Conflict(f"an event with id {replacement.id!r} already exists")
    await _take_out(conn, queries, event)
    await _note_correction(conn, queries, replacement.customer_id, replacement.ts_ms)
    stored = await _event(conn, queries, replacement.id, number)
    assert stored is not None
    return Amendment(event_id, stored, correction)


async def settle_step(
    conn: Connection,
    queries: Mapping[str, str],
    customer_partials: CustomerPartials,
    *,
    calendars: Mapping[str, PeriodCalendar],
    ops: Mapping[str, Op],
    webhooks: Sequence[WebhookConfig],
    now_ms: int,
    invoicing: PeriodInvoicing | None = None,
    meters: Mapping[str, EventTypeConfig] | None = None,
) -> tuple[int, int]:
    """In the caller's transaction: claim a batch of late changes and recompute the
    records they touched. Returns (changes consumed, records and revisions written).

    A change that falls in a period whose close is under way (horizon raised, watermark
    not yet moved) stays for a later round. A batch stops once it touches TOUCHED_BATCH
    records, so one transaction stays short.
    """
    cursor = await conn.execute(queries["claim_late_changes"].encode(), (SETTLE_BATCH,))
    claimed = await cursor.fetchall()
    marks = await _by_period(conn, queries["watermarks"])
    horizons = await _by_period(conn, queries["close_horizons"])
    # Levels carry up to the periods under close too, so a change that reaches one waits.
    reach = {
        name: max(marks.get(name, -(2**62)), horizons.get(name, -(2**62)))
        for name in marks.keys() | horizons.keys()
    }
    levels = time_weighted(meters)
    ready: list[tuple[str, str, int]] = []
    found: set[Touched] = set()
    for period, customer_id, bucket in claimed:
        names = change_periods(period, calendars)
        carries = await _level_carries(conn, queries, levels, customer_id, bucket, names)
        touched = touched_records(
            [(name, customer_id, bucket) for name in names], calendars, carries, reach
        )
        if any(_under_close(t, marks, horizons) for t in touched):
            continue
        ready.append((period, customer_id, bucket))
        found.update(touched)
        if len(found) >= TOUCHED_BATCH:
            break  # the other claimed changes wait for the next transaction
    written = 0
    for record in sorted(found):
        mark = marks.get(record.period)
        closed = mark is not None and record.bounds.end_ms <= mark
        written += await _revise(
            conn,
            queries,
            customer_partials,
            record,
            closed,
            ops,
            webhooks,
            now_ms,
            invoicing,
            meters,
        )
    async with conn.cursor() as batch:
        await batch.executemany(queries["delete_late_change"].encode(), ready)
    return len(ready), written


def _under_close(touched: Touched, marks: Mapping[str, int], horizons: Mapping[str, int]) -> bool:
    """Whether `touched` lies in a period whose close is under way (horizon raised,
    watermark not yet moved past it)."""
    low = -(2**62)
    start = touched.bounds.start_ms
    return marks.get(touched.period, low) <= start < horizons.get(touched.period, low)


async def _level_carries(
    conn: Connection,
    queries: Mapping[str, str],
    meters: Mapping[str, EventTypeConfig],
    customer_id: str,
    bucket: int,
    names: tuple[str, ...],
) -> list[LevelCarry]:
    """How far a change in `bucket` reaches through the time-weighted levels it may
    alter: the customer's later events are read through the meter's index, a page at a time."""
    carries = []
    for event_type, meter in meters.items():
        in_bucket = with_type(queries["bucket_level_metadata"], event_type).encode()
        rows = await conn.execute(in_bucket, LevelEnd.bucket_params(customer_id, bucket))
        search = LevelEnd(meter, customer_id, bucket, [raw for (raw,) in await rows.fetchall()])
        later = with_type(queries["later_levels"], event_type).encode()
        while (params := search.next_page()) is not None:
            search.see(await (await conn.execute(later, params)).fetchall())
        carry = search.carry(names)
        if carry is not None:
            carries.append(carry)
    return carries


async def _by_period(conn: Connection, sql: str) -> dict[str, int]:
    cursor = await conn.execute(sql.encode())
    return {period: int(until) for period, until in await cursor.fetchall()}


async def list_revisions(
    conn: Connection, queries: Mapping[str, str], aggregation_id: str
) -> list[Revision]:
    cursor = await conn.execute(queries["first_revision"].encode(), (aggregation_id,))
    first = await cursor.fetchone()
    if first is None:
        return []
    cursor = await conn.execute(queries["later_revisions"].encode(), (aggregation_id,))
    return [
        Revision(1, decode_totals(first[0]), first[1]),
        *(
            Revision(n, decode_totals(totals), created)
            for n, totals, created in await cursor.fetchall()
        ),
    ]


async def _revise(
    conn: Connection,
    queries: Mapping[str, str],
    customer_partials: CustomerPartials,
    touched: Touched,
    closed: bool,
    ops: Mapping[str, Op],
    webhooks: Sequence[WebhookConfig],
    now_ms: int,
    invoicing: PeriodInvoicing | None,
    meters: Mapping[str, EventTypeConfig] | None,
) -> int:
    # The record's row lock serialises processes revising it; a record that does not
    # exist yet is created with ON CONFLICT, and a process that loses looks again.
    for _ in range(2):
        await conn.execute(_LOCK_RECORD.encode(), (touched.aggregation_id,))
        cursor = await conn.execute(_READ_RECORD.encode(), (touched.aggregation_id,))
        row = await cursor.fetchone()
        partials = await customer_partials(conn, touched.customer_id, touched.bounds)
        totals = totals_of(partials, ops)
        if meters:
            # The meters computed from raw events, as a close computes them.
            values = await period_meter_values(
                conn,
                queries,
                meters=meters,
                bounds=touched.bounds,
                customer_ids=[touched.customer_id],
            )
            totals = merge_meter_values(totals, customer_values(values, touched.customer_id))
        plan = plan_revision(
            touched=touched,
            current=None if row is None else aggregation_from_row(row),
            totals=totals,
            closed=closed,
            now_ms=now_ms,
            webhooks=webhooks,
        )
        if await _write_plan(conn, queries, plan, now_ms):
            if invoicing is not None:
                await _invoice_plan(conn, queries, plan, invoicing, touched, now_ms)
            return int(plan.record is not None or plan.revision is not None)
    return 0


async def _invoice_plan(
    conn: Connection,
    queries: Mapping[str, str],
    plan: RevisionPlan,
    invoicing: PeriodInvoicing,
    touched: Touched,
    now_ms: int,
) -> None:
    """A revision of an invoiced period gets its adjustment invoice; a closed period's
    first record its invoice, as a close would have written it."""
    delivery_sql = queries["insert_deliveries"]
    if plan.revision is not None:
        await write_adjustments(
            conn,
            invoicing=invoicing,
            rows=[plan.revision],
            delivery_sql=delivery_sql,
            now_ms=now_ms,
        )
    if plan.record is not None and plan.record.status == "closed":
        await write_invoices(
            conn,
            invoicing=invoicing,
            period=touched.period,
            bounds=touched.bounds,
            rows=[plan.record],
            delivery_sql=delivery_sql,
            now_ms=now_ms,
        )


async def _write_plan(
    conn: Connection, queries: Mapping[str, str], plan: RevisionPlan, now_ms: int
) -> bool:
    """Write the plan; False when another process created the record meanwhile."""
    if plan.delete_open is not None:
        await conn.execute(queries["delete_open_aggregation"].encode(), (plan.delete_open,))
    if plan.record is not None:
        cursor = await conn.execute(
            queries["upsert_record"].encode(), aggregation_values(plan.record)
        )
        if await cursor.fetchone() is None:
            return False
    if plan.revision is not None:
        revision = plan.revision
        await conn.execute(
            queries["insert_revision"].encode(),
            (revision.id, revision.revision, encode_totals(revision.totals), now_ms),
        )
    await _insert_outgoing(conn, queries, plan.outgoing, now_ms)
    return True


async def _insert_outgoing(
    conn: Connection, queries: Mapping[str, str], outgoing: Sequence[Outgoing], now_ms: int
) -> None:
    if outgoing:
        async with conn.cursor() as cursor:
            await cursor.executemany(
                queries["insert_delivery"].encode(),
                [
                    (o.message_id, o.aggregation_id, o.url, o.payload, now_ms, now_ms, now_ms)
                    for o in outgoing
                ],
            )


async def _take_out(conn: Connection, queries: Mapping[str, str], event: StoredEvent) -> None:
    """A voided event leaves the rollups; the records it was in are recomputed later."""
    bucket = event.ts_ms // BUCKET_MS
    await recompute_rollups(conn, queries, [(event.customer_id, event.event_type, bucket)])
    await _note_correction(conn, queries, event.customer_id, event.ts_ms)


async def _note_correction(
    conn: Connection, queries: Mapping[str, str], customer_id: str, ts_ms: int
) -> None:
    await conn.execute(
        queries["insert_late_change"].encode(), (ANY_PERIOD, customer_id, ts_ms // BUCKET_MS)
    )


async def _insert_void(
    conn: Connection,
    queries: Mapping[str, str],
    correction: Correction,
    idempotency_key: str | None,
) -> bool:
    cursor = await conn.execute(
        queries["insert_void"].encode(), void_values(correction, idempotency_key)
    )
    return await cursor.fetchone() is not None


async def _correction(conn: Connection, sql: str, value: str) -> Correction | None:
    cursor = await conn.execute(sql.encode(), (value,))
    row = await cursor.fetchone()
    return None if row is None else correction_from_row(row)


async def _event(
    conn: Connection, queries: Mapping[str, str], event_id: str, number: NumberOf
) -> StoredEvent | None:
    cursor = await conn.execute(queries["event_by_id"].encode(), (event_id,))
    row = await cursor.fetchone()
    return None if row is None else event_from_row(row, number)
