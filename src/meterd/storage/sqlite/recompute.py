"""Recomputing SQLite rollups from the active raw events, after a correction.

Partials are not invertible (min, max, first and last cannot be "un-added"), so a
voided event is taken out by folding its bucket again from the events that are
still active. This is the one place that does so: when the rollups gain new
shapes, this function recomputes them too.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping

from meterd.periods import BUCKET_MS
from meterd.rollup import BucketKey, Partial, Point, fold
from meterd.storage.sqlite import daily
from meterd.storage.sqlite.group_rollups import recompute_group_buckets
from meterd.storage.sqlite.rollups import partial_rows, upsert_partials


def recompute_rollups(
    conn: sqlite3.Connection, queries: Mapping[str, str], keys: Iterable[BucketKey]
) -> None:
    """Fold the (customer, event type, 15-minute bucket) rollups named by `keys` again
    from the active raw events, and the daily rollups of compacted days among them.

    Runs in the caller's (writer) transaction.
    """
    compacted = daily.days_until(conn, queries)
    keys = sorted(set(keys))
    recompute_group_buckets(conn, queries, keys, compacted)
    days: set[BucketKey] = set()
    for customer_id, event_type, bucket in keys:
        conn.execute(queries["delete_rollup"], (customer_id, bucket, event_type))
        start = bucket * BUCKET_MS
        rows = conn.execute(
            queries["active_bucket_events"], (customer_id, start, start + BUCKET_MS, event_type)
        )
        points = [(customer_id, event_type, Point(ts, seq, value)) for seq, value, ts in rows]
        upsert_partials(conn, queries["upsert_rollup"], fold(points))
        day = bucket // daily.BUCKETS_PER_DAY
        if compacted is not None and day < compacted:
            days.add((customer_id, event_type, day))
    for customer_id, event_type, day in sorted(days):
        conn.execute(queries["delete_daily_rollup"], (customer_id, day, event_type))
        first = day * daily.BUCKETS_PER_DAY
        rows = conn.execute(
            queries["type_rollups"],
            (customer_id, first, first + daily.BUCKETS_PER_DAY, event_type),
        )
        merged: Partial | None = None
        for _, _, partial in partial_rows(rows):
            merged = partial if merged is None else merged.merge(partial)
        if merged is not None:
            upsert_partials(
                conn, queries["upsert_daily_rollup"], {(customer_id, event_type, day): merged}
            )
