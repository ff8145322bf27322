"""The ingest transaction's work on SQLite: dedup, the events, and every rollup they feed.

A plain function of a connection and the named queries, so the writer thread and the
ingest process run the same code.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence

from meterd.errors import IdConflict
from meterd.idempotency import Outcome, StoredContent, resolve
from meterd.ingest import NewEvent
from meterd.meters.group_rollup import StoredRow
from meterd.rollup import Point, fold
from meterd.storage.sqlite import corrections, daily, group_rollups, rollups
from meterd.storage.sqlite.alerts import touch_watched
from meterd.storage.sqlite.multirow import insert_rows

# SQLite's default limit on bound parameters is 32766; stay well below it.
_IN_CHUNK = 900


def insert_events(
    conn: sqlite3.Connection, queries: Mapping[str, str], jobs: Sequence[Sequence[NewEvent]]
) -> list[Outcome]:
    """Runs in the writer's transaction: skip known ids, refuse reused ones, insert the rest.

    The writer is the only one writing, so what is read here cannot change before
    the insert: deciding in Python is race-free.
    """
    q = queries
    stored = _stored_by_id(conn, {event.id for events in jobs for event in events})
    outcomes = resolve(jobs, stored)
    seq = conn.execute(q["max_seq"]).fetchone()[0]
    compacted = daily.days_until(conn, q)
    rows = []
    points = []
    for events, outcome in zip(jobs, outcomes, strict=True):
        if isinstance(outcome, IdConflict):
            continue
        for event, fresh in zip(events, outcome, strict=True):
            if not fresh:
                continue
            seq += 1
            points.append(
                (event.customer_id, event.event_type, Point(event.ts_ms, seq, event.value))
            )
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
    insert_rows(conn, q["insert_event"], rows)
    write_derived(conn, q, rows, points, compacted)
    return outcomes


def write_derived(
    conn: sqlite3.Connection,
    queries: Mapping[str, str],
    rows: Sequence[StoredRow],
    points: Sequence[tuple[str, str, Point]],
    compacted: int | None,
) -> None:
    """Everything the new events feed, in the caller's transaction: rollups, daily
    partials of late events, group rollups, notes of late events and alert marks."""
    rollups.upsert_partials(conn, queries["upsert_rollup"], fold(points))
    late = daily.late_partials(points, compacted)
    if late:
        rollups.upsert_partials(conn, queries["upsert_daily_rollup"], late)
    group_rollups.keep_group_rollups(conn, queries, rows, compacted)
    corrections.note_late_events(conn, queries, points)
    touch_watched(conn, ((customer, meter) for customer, meter, _ in points))


def _stored_by_id(conn: sqlite3.Connection, ids: set[str]) -> dict[str, StoredContent]:
    found: dict[str, StoredContent] = {}
    pending = list(ids)
    for start in range(0, len(pending), _IN_CHUNK):
        chunk = pending[start : start + _IN_CHUNK]
        marks = ",".join("?" * len(chunk))
        sql = (
            "SELECT id, event_type, customer_id, value, metadata, ts FROM events"
            f" WHERE id IN ({marks})"
        )
        for id_, *content in conn.execute(sql, chunk):
            found[id_] = StoredContent(*content)
    return found
