"""Daily rollups: whole UTC days folded from the 15-minute rollups.

A month of a busy customer is 96 rollup rows a day per event type; reading it
live costs those rows. Once a day is complete, the scheduler folds it into one
row per (customer, event type) in `daily_rollups` and moves the compaction mark
past it. Reads take whole compacted days from there and only the edges of a
period from the 15-minute rows, so any period alignment (time zones, custom
anchors) stays exact. An event that arrives late for a compacted day updates
both tables in its ingest transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence

from meterd.periods import BUCKET_MS, PeriodBounds
from meterd.rollup import BucketKey, Partial, Point, fold
from meterd.storage.sqlite.group_rollups import compact_group_days
from meterd.storage.sqlite.rollups import partial_rows, upsert_partials

DAY_MS = 86_400_000
BUCKETS_PER_DAY = DAY_MS // BUCKET_MS
# Days folded per writer transaction, so ingest never waits long behind a backlog.
DAYS_PER_STEP = 1


def upsert_sql(upsert_rollup: str) -> str:
    """The rollup upsert aimed at daily_rollups (same columns; bucket is the day)."""
    head = "INSERT INTO rollups "
    if head not in upsert_rollup:
        raise ValueError("the rollup upsert must start with 'INSERT INTO rollups '")
    return upsert_rollup.replace(head, "INSERT INTO daily_rollups ", 1)


def days_until(conn: sqlite3.Connection, queries: Mapping[str, str]) -> int | None:
    """Every UTC day before this is compacted; None before the first compaction."""
    row = conn.execute(queries["compacted_days"]).fetchone()
    return None if row is None else int(row[0])


def late_partials(
    points: Sequence[tuple[str, str, Point]], compacted: int | None
) -> dict[BucketKey, Partial]:
    """Daily partials of the points that fall on already compacted days."""
    if compacted is None:
        return {}
    limit = compacted * DAY_MS
    return fold((p for p in points if p[2].ts_ms < limit), DAY_MS)


def compact_step(conn: sqlite3.Connection, queries: Mapping[str, str], before_ms: int) -> int:
    """Fold the next whole day(s) ending at or before `before_ms`; the days folded.

    Runs in one writer transaction; call it until it returns 0.
    """
    target = before_ms // DAY_MS
    compacted = days_until(conn, queries)
    if compacted is None:
        first = conn.execute(queries["first_bucket_from"], (-(2**62),)).fetchone()[0]
        compacted = target if first is None else min(int(first) // BUCKETS_PER_DAY, target)
        conn.execute(queries["set_compacted_days"], (compacted,))
    end = min(target, compacted + DAYS_PER_STEP)
    if end <= compacted:
        return 0
    rows = conn.execute(
        queries["period_rollups"], (compacted * BUCKETS_PER_DAY, end * BUCKETS_PER_DAY)
    )
    daily: dict[BucketKey, Partial] = {}
    for customer_id, event_type, partial in partial_rows(rows):
        key = (customer_id, event_type, partial.first.ts_ms // DAY_MS)
        known = daily.get(key)
        daily[key] = partial if known is None else known.merge(partial)
    upsert_partials(conn, queries["upsert_daily_rollup"], daily)
    compact_group_days(conn, queries, compacted, end)
    conn.execute(queries["set_compacted_days"], (end,))
    return end - compacted


def span_params(
    customer_id: str, bounds: PeriodBounds, compacted: int | None
) -> dict[str, int | str]:
    """Parameters of the customer_span query: whole compacted days, 15-minute edges."""
    start = bounds.start_ms // BUCKET_MS
    end = bounds.end_ms // BUCKET_MS
    first_day = -(-start // BUCKETS_PER_DAY)
    end_day = min(end // BUCKETS_PER_DAY, compacted if compacted is not None else first_day)
    if end_day <= first_day:
        # No whole compacted day inside: all of it from the 15-minute rows.
        return _span(customer_id, start, end, end, 0, 0, end)
    return _span(
        customer_id,
        start,
        first_day * BUCKETS_PER_DAY,
        end_day * BUCKETS_PER_DAY,
        first_day,
        end_day,
        end,
    )


def _span(
    customer: str,
    start: int,
    fine_end: int,
    fine_start: int,
    first_day: int,
    end_day: int,
    end: int,
) -> dict[str, int | str]:
    return {
        "customer": customer,
        "start": start,
        "fine_end": fine_end,
        "first_day": first_day,
        "end_day": end_day,
        "fine_start": fine_start,
        "end": end,
    }
