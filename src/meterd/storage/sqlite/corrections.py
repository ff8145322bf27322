"""Corrections and late events in SQLite: voids, amendments, the record of what
changed in closed periods, and the revisions it leads to (DESIGN.md section 8).

Every function that writes runs on the writer, in the caller's transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence

import msgspec

from meterd.aggregation import merge_meter_values, totals_of
from meterd.config.model import EventTypeConfig, Op, WebhookConfig
from meterd.errors import Conflict, NotFound
from meterd.ingest import NewEvent
from meterd.invoices import PeriodInvoicing
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
from meterd.rollup import Partial, Point
from meterd.storage.base import (
    Amendment,
    Correction,
    EventDetail,
    KeyIdentity,
    Revision,
    StoredEvent,
)
from meterd.storage.rows import (
    aggregation_from_row,
    aggregation_values,
    decode_totals,
    encode_totals,
    event_from_row,
    select_aggregations,
)
from meterd.storage.sqlite.invoicing import write_adjustments, write_invoices
from meterd.storage.sqlite.meters import period_meter_values, with_type
from meterd.storage.sqlite.recompute import recompute_rollups
from meterd.storage.voids import (
    correction_from_row,
    repeated_amendment,
    void_again,
    void_values,
    voided_conflict,
)

InsertEvents = Callable[[sqlite3.Connection, Sequence[NewEvent]], list[bool]]
CustomerPartials = Callable[[sqlite3.Connection, str, PeriodBounds], dict[str, Partial]]

_SELECT_RECORD = select_aggregations() + " WHERE id = ?"


def note_late_events(
    conn: sqlite3.Connection,
    queries: Mapping[str, str],
    points: Sequence[tuple[str, str, Point]],
) -> None:
    """Record (period, customer, bucket) for stored events that fall in a closed period.

    Part of every ingest transaction, so it costs one read of the few watermark
    rows plus one comparison per event; rows are written only for late events.
    """
    marks = conn.execute(queries["watermarks"]).fetchall()
    if not marks:
        return
    latest = max(until for _, until in marks)
    late = {
        (period, customer_id, point.ts_ms // BUCKET_MS)
        for customer_id, _, point in points
        if point.ts_ms < latest
        for period, until in marks
        if point.ts_ms < until
    }
    if late:
        conn.executemany(queries["insert_late_change"], sorted(late))


def get_event(
    conn: sqlite3.Connection, queries: Mapping[str, str], event_id: str
) -> EventDetail | None:
    event = _event(conn, queries, event_id)
    if event is None:
        return None
    voided = _correction(conn, queries["void_of_event"], event_id)
    amends = _correction(conn, queries["void_replaced_by"], event_id)
    if voided is not None:
        event = msgspec.structs.replace(event, voided_ms=voided.voided_ms)
    return EventDetail(event=event, voided=voided, amends=amends)


def void_event(
    conn: sqlite3.Connection,
    queries: Mapping[str, str],
    *,
    event_id: str,
    reason: str,
    key: KeyIdentity,
    now_ms: int,
) -> Correction:
    event = _event(conn, queries, event_id)
    if event is None:
        raise NotFound(f"no event has id {event_id!r}")
    earlier = _correction(conn, queries["void_of_event"], event_id)
    if earlier is not None:
        return void_again(event_id, earlier)
    correction = Correction(event_id, now_ms, reason, key)
    conn.execute(queries["insert_void"], void_values(correction, None))
    _take_out(conn, queries, event)
    return correction


def amend_event(
    conn: sqlite3.Connection,
    queries: Mapping[str, str],
    insert_events: InsertEvents,
    *,
    event_id: str,
    replacement: NewEvent,
    reason: str,
    key: KeyIdentity,
    idempotency_key: str | None,
    now_ms: int,
) -> Amendment:
    if idempotency_key is not None:
        earlier = _correction(conn, queries["void_by_idempotency_key"], idempotency_key)
        if earlier is not None:
            repeated = _event(conn, queries, repeated_amendment(event_id, earlier))
            assert repeated is not None
            return Amendment(event_id, repeated, earlier, duplicate=True)
    event = _event(conn, queries, event_id)
    if event is None:
        raise NotFound(f"no event has id {event_id!r}")
    voided = _correction(conn, queries["void_of_event"], event_id)
    if voided is not None:
        raise voided_conflict(event_id)
    correction = Correction(event_id, now_ms, reason, key, replacement.id)
    conn.execute(queries["insert_void"], void_values(correction, idempotency_key))
    if insert_events(conn, [replacement]) != [True]:
        raise Conflict(f"an event with id {replacement.id!r} already exists")
    _take_out(conn, queries, event)
    _note_correction(conn, queries, replacement.customer_id, replacement.ts_ms)
    stored = _event(conn, queries, replacement.id)
    assert stored is not None
    return Amendment(event_id, stored, correction)


def settle_step(
    conn: sqlite3.Connection,
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
    """Consume a batch of late changes: recompute each touched record and write what
    changed. Returns (changes consumed, records and revisions written).

    A batch stops once it touches TOUCHED_BATCH records (levels carried over many
    periods touch many), so one writer transaction stays short.
    """
    changes = conn.execute(queries["late_changes"], (SETTLE_BATCH,)).fetchall()
    if not changes:
        return 0, 0
    marks = dict(conn.execute(queries["watermarks"]).fetchall())
    levels = time_weighted(meters)
    taken: list[tuple[str, str, int]] = []
    found: set[Touched] = set()
    for period, customer_id, bucket in changes:
        names = change_periods(period, calendars)
        carries = _level_carries(conn, queries, levels, customer_id, bucket, names)
        found.update(
            touched_records(
                [(name, customer_id, bucket) for name in names], calendars, carries, marks
            )
        )
        taken.append((period, customer_id, bucket))
        if len(found) >= TOUCHED_BATCH:
            break
    written = 0
    for touched in sorted(found):
        mark = marks.get(touched.period)
        row = conn.execute(_SELECT_RECORD, (touched.aggregation_id,)).fetchone()
        partials = customer_partials(conn, touched.customer_id, touched.bounds)
        totals = totals_of(partials, ops)
        if meters:
            # The meters computed from raw events, as a close computes them.
            values = period_meter_values(
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
            closed=mark is not None and touched.bounds.end_ms <= mark,
            now_ms=now_ms,
            webhooks=webhooks,
        )
        written += _write_plan(conn, queries, plan, now_ms)
        if invoicing is not None:
            _invoice_plan(conn, queries, plan, invoicing, touched, now_ms)
    conn.executemany(queries["delete_late_change"], taken)
    return len(taken), written


def _level_carries(
    conn: sqlite3.Connection,
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
        in_bucket = with_type(queries["bucket_level_metadata"], event_type)
        rows = conn.execute(in_bucket, LevelEnd.bucket_params(customer_id, bucket))
        search = LevelEnd(meter, customer_id, bucket, [raw for (raw,) in rows])
        later = with_type(queries["later_levels"], event_type)
        while (params := search.next_page()) is not None:
            search.see(conn.execute(later, params).fetchall())
        carry = search.carry(names)
        if carry is not None:
            carries.append(carry)
    return carries


def list_revisions(
    conn: sqlite3.Connection, queries: Mapping[str, str], aggregation_id: str
) -> list[Revision]:
    first = conn.execute(queries["first_revision"], (aggregation_id,)).fetchone()
    if first is None:
        return []
    later = conn.execute(queries["later_revisions"], (aggregation_id,))
    return [
        Revision(1, decode_totals(first[0]), first[1]),
        *(Revision(n, decode_totals(totals), created) for n, totals, created in later),
    ]


def _write_plan(
    conn: sqlite3.Connection, queries: Mapping[str, str], plan: RevisionPlan, now_ms: int
) -> int:
    if plan.delete_open is not None:
        conn.execute(queries["delete_open_aggregation"], (plan.delete_open,))
    if plan.record is not None:
        conn.execute(queries["upsert_aggregation"], aggregation_values(plan.record))
    if plan.revision is not None:
        revision = plan.revision
        conn.execute(
            queries["insert_revision"],
            (revision.id, revision.revision, encode_totals(revision.totals), now_ms),
        )
    conn.executemany(
        queries["insert_delivery"],
        [
            (out.message_id, out.aggregation_id, out.url, out.payload, now_ms, now_ms, now_ms)
            for out in plan.outgoing
        ],
    )
    return int(plan.record is not None or plan.revision is not None)


def _invoice_plan(
    conn: sqlite3.Connection,
    queries: Mapping[str, str],
    plan: RevisionPlan,
    invoicing: PeriodInvoicing,
    touched: Touched,
    now_ms: int,
) -> None:
    """A revision of an invoiced period gets its adjustment invoice; a closed period's
    first record its invoice, as a close would have written it."""
    delivery_sql = queries["insert_delivery"]
    if plan.revision is not None:
        write_adjustments(
            conn,
            invoicing=invoicing,
            rows=[plan.revision],
            delivery_sql=delivery_sql,
            now_ms=now_ms,
        )
    if plan.record is not None and plan.record.status == "closed":
        write_invoices(
            conn,
            invoicing=invoicing,
            period=touched.period,
            bounds=touched.bounds,
            rows=[plan.record],
            delivery_sql=delivery_sql,
            now_ms=now_ms,
        )


def _take_out(conn: sqlite3.Connection, queries: Mapping[str, str], event: StoredEvent) -> None:
    """A voided event leaves the rollups; the records it was in are recomputed later."""
    recompute_rollups(
        conn, queries, [(event.customer_id, event.event_type, event.ts_ms // BUCKET_MS)]
    )
    _note_correction(conn, queries, event.customer_id, event.ts_ms)


def _note_correction(
    conn: sqlite3.Connection, queries: Mapping[str, str], customer_id: str, ts_ms: int
) -> None:
    conn.execute(queries["insert_late_change"], (ANY_PERIOD, customer_id, ts_ms // BUCKET_MS))


def _correction(conn: sqlite3.Connection, sql: str, value: str) -> Correction | None:
    row = conn.execute(sql, (value,)).fetchone()
    return None if row is None else correction_from_row(row)


def _event(
    conn: sqlite3.Connection, queries: Mapping[str, str], event_id: str
) -> StoredEvent | None:
    row = conn.execute(queries["event_by_id"], (event_id,)).fetchone()
    return None if row is None else event_from_row(row)
