"""Group rollups in PostgreSQL (DESIGN §6): kept at ingest, built in the background.

The same shape as SQLite's (see storage/sqlite/group_rollups.py), without daily rows.
Several meterd processes may share the database: registering a meter waits for
in-flight ingest (the ingest barrier), so every event up to its target seq is
committed before the build reads it, and every later one sees the registration.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, NamedTuple

import psycopg

from meterd.meters.group_rollup import (
    GroupBucketKey,
    Level,
    StoredRow,
    decode_group_by,
    encode_group_by,
    fold_groups,
    fold_levels,
    group_of_text,
    join_levels,
    level_value,
    positions,
    project,
)
from meterd.meters.groups import GroupKey, GroupTotal
from meterd.meters.values import MeterValue
from meterd.periods import BUCKET_MS
from meterd.rollup import ExactNumber, Partial, Point, exact, exact_decimal

Connection = psycopg.AsyncConnection[tuple[Any, ...]]
# Events folded per transaction by the background build.
BUILD_CHUNK = 20_000


class GroupMeter(NamedTuple):
    group_by: tuple[str, ...]
    levels: bool  # a time_weighted_avg meter: its buckets keep the level integral
    built_seq: int
    target_seq: int

    @property
    def ready(self) -> bool:
        return self.built_seq >= self.target_seq

    def covers(self, seq: int) -> bool:
        """Whether the rows hold this event (once folded): built, or ingested after."""
        return seq <= self.built_seq or seq > self.target_seq


async def group_meters(conn: Connection, queries: Mapping[str, str]) -> dict[str, GroupMeter]:
    cursor = await conn.execute(queries["group_meters"].encode())
    return {
        event_type: GroupMeter(decode_group_by(group_by), levels, built, target)
        for event_type, group_by, levels, built, target in await cursor.fetchall()
    }


async def keep_group_rollups(
    conn: Connection, queries: Mapping[str, str], rows: Iterable[StoredRow]
) -> None:
    """Fold the transaction's stored rows into the group rollups of the grouped meters.

    Rows are (seq, id, event_type, customer_id, value, metadata, ts_ms). Runs in the
    ingest transaction; with no grouped meter it costs one read of an empty table.
    """
    meters = await group_meters(conn, queries)
    if meters:
        await _add(conn, queries, rows, meters)


async def _add(
    conn: Connection,
    queries: Mapping[str, str],
    rows: Iterable[StoredRow],
    meters: Mapping[str, GroupMeter],
) -> None:
    wanted = [row for row in rows if row[2] in meters]
    # A level integral depends on the order of its bucket's events: fold those buckets
    # again from the events rather than merge (an event may land between two others).
    touched = {(row[3], row[2], row[6] // BUCKET_MS) for row in wanted if meters[row[2]].levels}
    if touched:
        await recompute_group_buckets(conn, queries, touched, meters)
    group_by = {event_type: m.group_by for event_type, m in meters.items() if not m.levels}
    await _upsert(conn, queries, fold_groups(wanted, group_by))


async def _upsert(
    conn: Connection,
    queries: Mapping[str, str],
    partials: Mapping[GroupBucketKey, Partial],
    areas: Mapping[GroupBucketKey, ExactNumber] | None = None,
) -> None:
    if not partials:
        return
    columns: list[list[Any]] = [[] for _ in range(15)]
    for key, p in sorted(partials.items()):
        customer_id, event_type, bucket, group = key
        area = None if areas is None else areas.get(key)
        row = (
            customer_id,
            event_type,
            bucket,
            group,
            p.count,
            Decimal(p.sum),
            Decimal(exact(p.min)),
            Decimal(exact(p.max)),
            p.first.ts_ms,
            p.first.seq,
            Decimal(exact(p.first.value)),
            p.last.ts_ms,
            p.last.seq,
            Decimal(exact(p.last.value)),
            None if area is None else Decimal(area),
        )
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    await conn.execute(queries["upsert_group_rollups"].encode(), columns)


def _stored(rows: Iterable[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows read back from events: NUMERIC values as the numbers the rollups hold."""
    return [(*row[:4], _number(row[4]), *row[5:]) for row in rows]


async def register_group_meters(
    conn: Connection,
    queries: Mapping[str, str],
    wanted: Mapping[str, Sequence[str]],
    levels: Collection[str] = (),
) -> list[str]:
    """Keep group rollups for exactly the `wanted` meters (event type -> groupBy);
    those in `levels` (time_weighted_avg) keep the level integral too.

    Runs in the caller's transaction, behind the ingest barrier. The types to build.
    """
    known = await group_meters(conn, queries)
    if known.keys() == wanted.keys() and all(
        (known[t].group_by, known[t].levels) == (tuple(keys), t in levels)
        for t, keys in wanted.items()
    ):
        return []
    await conn.execute(queries["ingest_barrier"].encode())
    for event_type in sorted(known.keys() - wanted.keys()):
        await conn.execute(queries["delete_group_rollups_of"].encode(), (event_type,))
        await conn.execute(queries["forget_group_meter"].encode(), (event_type,))
    cursor = await conn.execute(queries["max_event_seq"].encode())
    row = await cursor.fetchone()
    last_seq = 0 if row is None else int(row[0])
    started = []
    for event_type, keys in sorted(wanted.items()):
        meter = known.get(event_type)
        is_level = event_type in levels
        if meter is not None and (meter.group_by, meter.levels) == (tuple(keys), is_level):
            continue
        await conn.execute(queries["delete_group_rollups_of"].encode(), (event_type,))
        await conn.execute(
            queries["register_group_meter"].encode(),
            (event_type, encode_group_by(keys), is_level, last_seq),
        )
        started.append(event_type)
    return started


async def restart_group_builds(conn: Connection, queries: Mapping[str, str]) -> None:
    """`meterd rebuild`: every grouped meter's rows go, and are built again."""
    await conn.execute(queries["ingest_barrier"].encode())
    await conn.execute(queries["delete_all_group_rollups"].encode())
    cursor = await conn.execute(queries["max_event_seq"].encode())
    row = await cursor.fetchone()
    await conn.execute(
        queries["restart_group_builds"].encode(), (0 if row is None else int(row[0]),)
    )


async def build_step(conn: Connection, queries: Mapping[str, str]) -> int:
    """Fold the next chunk of one unbuilt meter's events; the events folded (0: all built).

    The meter's row is locked, so two processes never fold the same chunk.
    """
    meters = await group_meters(conn, queries)
    for event_type, meter in sorted(meters.items()):
        if meter.ready:
            continue
        cursor = await conn.execute(queries["lock_group_meter"].encode(), (event_type,))
        locked = await cursor.fetchone()
        if locked is None or locked[0] >= locked[1]:
            continue
        built, target = locked
        cursor = await conn.execute(
            queries["group_build_events"].encode(), (event_type, built, target, BUILD_CHUNK)
        )
        rows = _stored(await cursor.fetchall())
        done = target if len(rows) < BUILD_CHUNK else rows[-1][0]
        await conn.execute(queries["set_built_seq"].encode(), (done, event_type))
        # Folded as covered by the new mark (a level bucket is folded whole again).
        await _add(conn, queries, rows, {event_type: meter._replace(built_seq=done)})
        return max(len(rows), 1)
    return 0


async def recompute_group_buckets(
    conn: Connection,
    queries: Mapping[str, str],
    keys: Iterable[tuple[str, str, int]],
    meters: Mapping[str, GroupMeter] | None = None,
) -> None:
    """Fold the group rollups of (customer, event type, bucket) again from active events.

    Called by `recompute_rollups` after it locked each bucket's plain rollup row, which
    an ingest of that bucket updates first: none can add to these rows meanwhile; and
    at ingest for the buckets of level meters, whose plain rollup rows that ingest
    has just locked itself.
    """
    if meters is None:
        meters = await group_meters(conn, queries)
    for customer_id, event_type, bucket in sorted(set(keys)):
        meter = meters.get(event_type)
        if meter is None:
            continue
        await conn.execute(
            queries["delete_group_bucket"].encode(), (customer_id, event_type, bucket)
        )
        start = bucket * BUCKET_MS
        cursor = await conn.execute(
            queries["group_bucket_events"].encode(),
            (customer_id, start, start + BUCKET_MS, event_type),
        )
        rows = [row for row in _stored(await cursor.fetchall()) if meter.covers(row[0])]
        group_by = {event_type: meter.group_by}
        if meter.levels:
            levels = fold_levels(rows, group_by)
            partials = {key: partial for key, (partial, _) in levels.items()}
            areas = {key: area for key, (_, area) in levels.items()}
            await _upsert(conn, queries, partials, areas)
        else:
            await _upsert(conn, queries, fold_groups(rows, group_by))


async def group_totals(
    conn: Connection,
    queries: Mapping[str, str],
    *,
    event_type: str,
    windows: Sequence[tuple[int, int]],
    group_by: Sequence[str],
    by_customer: bool,
    customer_ids: Sequence[str] | None,
    filters: Mapping[str, Iterable[str]] | None,
) -> list[GroupTotal] | None:
    """Group rollups folded per window, [customer] and group; None when they cannot answer.

    They cannot when the meter has no built group rollups, when a wanted dimension or
    filter key is not among its stored ones, or when a window is not on 15-minute
    boundaries: the caller folds raw events then.
    """
    meter = (await group_meters(conn, queries)).get(event_type)
    if meter is None or not meter.ready:
        return None
    places = positions(meter.group_by, group_by)
    filter_places = positions(meter.group_by, list(filters or {}))
    if places is None or filter_places is None:
        return None
    if any(lo % BUCKET_MS or hi % BUCKET_MS for lo, hi in windows):
        return None
    params: dict[str, Any] = {
        "event_type": event_type,
        "places": list(range(len(windows))),
        "los": [lo // BUCKET_MS for lo, _ in windows],
        "his": [hi // BUCKET_MS for _, hi in windows],
    }
    conditions = []
    for index, (at, accepted) in enumerate(
        zip(filter_places, (filters or {}).values(), strict=True)
    ):
        params[f"fv{index}"] = sorted(accepted)
        conditions.append(f"AND (g.group_key::jsonb ->> {at}) = ANY(%(fv{index})s::text[])")
    customers = ""
    if customer_ids is not None:
        params["customer_ids"] = list(customer_ids)
        customers = "AND g.customer_id = ANY(%(customer_ids)s::text[])"
    sql = (
        queries["group_window_totals"]
        .replace("/*customers*/", customers)
        .replace("/*customer*/", ", g.customer_id" if by_customer else "")
        .replace("/*dims*/", ", g.group_key")
        .replace("/*filters*/", " ".join(conditions))
    )
    cursor = await conn.execute(sql.encode(), params)
    result = []
    for row in await cursor.fetchall():
        at = 2 if by_customer else 1
        customer = row[1] if by_customer else None
        group = (row[at],)
        count, total, low, high = row[at + 1 :]
        exact_total = int(total) if total == total.to_integral_value() else total.normalize()
        result.append(
            GroupTotal(
                row[0], customer, group, int(count), exact_total, _number(low), _number(high)
            )
        )
    return project(result, places)


async def level_values(
    conn: Connection,
    queries: Mapping[str, str],
    *,
    event_type: str,
    group_by: Sequence[str],
    from_ms: int,
    to_ms: int,
    customer_ids: Sequence[str] | None,
) -> dict[str, MeterValue] | None:
    """A time_weighted_avg meter's value per customer over [from_ms, to_ms), from its
    level rows; None when they cannot answer (the caller integrates raw events)."""
    meter = (await group_meters(conn, queries)).get(event_type)
    if meter is None or not meter.levels or not meter.ready or meter.group_by != tuple(group_by):
        return None
    if from_ms % BUCKET_MS or to_ms % BUCKET_MS:
        return None
    params: dict[str, Any] = {
        "event_type": event_type,
        "lo": from_ms // BUCKET_MS,
        "hi": to_ms // BUCKET_MS,
    }
    customers = ""
    if customer_ids is not None:
        params["customer_ids"] = list(customer_ids)
        customers = "AND g.customer_id = ANY(%(customer_ids)s::text[])"
    cursor = await conn.execute(
        queries["level_span"].replace("/*customers*/", customers).encode(), params
    )
    runs: dict[tuple[str, str], list[Level]] = {}
    for row in await cursor.fetchall():
        customer_id, group, count, first_ts, first_seq, first_value = row[:6]
        last_ts, last_seq, last_value, area = row[6:]
        if area is None:
            return None
        first = Point(first_ts, first_seq, _number(first_value))
        last = Point(last_ts, last_seq, _number(last_value))
        runs.setdefault((customer_id, group), []).append(
            Level(count, first, last, exact_decimal(area))
        )
    cursor = await conn.execute(
        queries["levels_before_bucket"].replace("/*customers*/", customers).encode(), params
    )
    before: dict[str, dict[GroupKey, float]] = {}
    for customer_id, group, value in await cursor.fetchall():
        before.setdefault(customer_id, {})[group_of_text(group)] = _number(value)
    spans_of: dict[str, dict[GroupKey, Level]] = {}
    for (customer_id, group), members in runs.items():
        joined = join_levels(sorted(members, key=lambda level: level.first))
        assert joined is not None
        spans_of.setdefault(customer_id, {})[group_of_text(group)] = joined
    result = {}
    for customer_id in sorted(spans_of.keys() | before.keys()):
        value = level_value(
            group_by, spans_of.get(customer_id, {}), before.get(customer_id, {}), from_ms, to_ms
        )
        if value.value is not None:
            result[customer_id] = value
    return result


def _number(value: Decimal) -> float:
    return int(value) if value == value.to_integral_value() else float(value)
