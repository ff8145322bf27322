"""Recomputing PostgreSQL rollups from the active raw events, after a correction.

Partials are not invertible (min, max, first and last cannot be "un-added"), so a
voided event is taken out by folding its bucket again from the events that are
still active. This is the one place that does so: when the rollups gain new
shapes, this function recomputes them too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

import psycopg

from meterd.periods import BUCKET_MS
from meterd.rollup import BucketKey, Partial, Point, exact, fold
from meterd.storage.postgres.group_rollups import recompute_group_buckets

Connection = psycopg.AsyncConnection[tuple[Any, ...]]


async def recompute_rollups(
    conn: Connection, queries: Mapping[str, str], keys: Iterable[BucketKey]
) -> None:
    """Fold the (customer, event type, 15-minute bucket) rollups named by `keys` again
    from the active raw events, in the caller's transaction.

    Each rollup row is locked before its events are read: an ingest that already
    added to it has committed (its events are read), one that has not waits and then
    adds its events on top of the recomputed row.
    """
    keys = sorted(set(keys))
    for customer_id, event_type, bucket in keys:
        await conn.execute(queries["lock_rollup"].encode(), (customer_id, bucket, event_type))
        start = bucket * BUCKET_MS
        cursor = await conn.execute(
            queries["active_bucket_events"].encode(),
            (customer_id, start, start + BUCKET_MS, event_type),
        )
        points = [
            (customer_id, event_type, Point(ts, seq, _number(value)))
            for seq, value, ts in await cursor.fetchall()
        ]
        partial = fold(points).get((customer_id, event_type, bucket))
        if partial is None:
            await conn.execute(queries["delete_rollup"].encode(), (customer_id, bucket, event_type))
        else:
            await _replace(conn, queries, customer_id, event_type, bucket, partial)
    # Every bucket's plain rollup row is locked now: no ingest adds to its groups meanwhile.
    await recompute_group_buckets(conn, queries, keys)


async def _replace(
    conn: Connection,
    queries: Mapping[str, str],
    customer_id: str,
    event_type: str,
    bucket: int,
    partial: Partial,
) -> None:
    await conn.execute(
        queries["replace_rollup"].encode(),
        (
            customer_id,
            bucket,
            event_type,
            partial.count,
            Decimal(partial.sum),
            Decimal(exact(partial.min)),
            Decimal(exact(partial.max)),
            partial.first.ts_ms,
            partial.first.seq,
            Decimal(exact(partial.first.value)),
            partial.last.ts_ms,
            partial.last.seq,
            Decimal(exact(partial.last.value)),
        ),
    )


def _number(value: Decimal) -> float:
    return int(value) if value == value.to_integral_value() else float(value)
