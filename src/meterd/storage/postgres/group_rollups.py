"""Group rollups in PostgreSQL (DESIGN §6): kept at ingest, built in the background.

The same shape as SQLite's (see storage/sqlite/group_rollups.py), without daily rows.
Several meterd processes may share the database: registering a meter waits for
in-flight ingest (the ingest barrier), so every event up to its target seq is
committed before the build reads it, and every later one sees the registration.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, NamedTuple

import psycopg

from meterd.config.model import EventTypeConfig
from meterd.meters.group_rollup import (
    DISTINCT,
    LEVELS,
    SUMS,
    VALUES,
    GroupBucketKey,
    Kind,
    Level,
    StoredRow,
    decode_group_by,
    encode_group_by,
    fold_groups,
    fold_levels,
    fold_payloads,
    group_of_text,
    join_levels,
    level_value,
    payload_value,
    positions,
    project,
    rollup_kind,
)
from meterd.meters.groups import GroupFilter, GroupKey, GroupTotal
from meterd.meters.values import MeterValue
from meterd.periods import BUCKET_MS
from meterd.rollup import ExactNumber, Partial, Point, exact, exact_decimal
from meterd.storage.postgres.customer_filter import customers_sql

Connection = psycopg.AsyncConnection[tuple[Any, ...]]
# Events folded per transaction by the background build.
BUILD_CHUNK = 20_000


class GroupMeter(NamedTuple):
    group_by: tuple[str, ...]
    kind: Kind  # see meterd.meters.group_rollup
    property_key: str | None  # unique_count: the metadata key counted
    built_seq: int
    target_seq: int

    @property
    def levels(self) -> bool:
        return self.kind == LEVELS

    @property
    def refolds(self) -> bool:
        """Whether a touched bucket is folded again from its events (never merged): a
        level integral depends on the order of its events; distinct sets are not
        merged in SQL here."""
        return self.kind in (LEVELS, DISTINCT)

    @property
    def ready(self) -> bool:
        return self.built_seq >= self.target_seq

    def covers(self, seq: int) -> bool:
        """Whether the rows hold this event (once folded): built, or ingested after."""
        return seq <= self.built_seq or seq > self.target_seq


async def group_meters(conn: Connection, queries: Mapping[str, str]) -> dict[str, GroupMeter]:
    cursor = await conn.execute(queries["group_meters"].encode())
    return {
        event_type: GroupMeter(decode_group_by(group_by), kind, prop, built, target)
        for event_type, group_by, kind, prop, built, target in await cursor.fetchall()
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
    touched = {(row[3], row[2], row[6] // BUCKET_MS) for row in wanted if meters[row[2]].refolds}
    if touched:
        await recompute_group_buckets(conn, queries, touched)
    group_by = {event_type: m.group_by for event_type, m in meters.items() if m.kind == SUMS}
    await _upsert(conn, queries, fold_groups(wanted, group_by))
    # Values are a multiset: a bucket's packed doubles are appended (readers sort).
    for event_type, meter in meters.items():
        if meter.kind != VALUES:
            continue
        folded = fold_payloads(wanted, {event_type: meter.group_by}, VALUES, None)
        partials = {key: partial for key, (partial, _) in folded.items()}
        payloads = {key: payload for key, (_, payload) in folded.items()}
        await _upsert(conn, queries, partials, payloads=payloads, sql="upsert_value_rollups")


async def _upsert(
    conn: Connection,
    queries: Mapping[str, str],
    partials: Mapping[GroupBucketKey, Partial],
    areas: Mapping[GroupBucketKey, ExactNumber] | None = None,
    payloads: Mapping[GroupBucketKey, bytes] | None = None,
    sql: str = "upsert_group_rollups",
) -> None:
    if not partials:
        return
    columns: list[list[Any]] = [[] for _ in range(16)]
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
            None if payloads is None else payloads.get(key),
        )
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    await conn.execute(queries[sql].encode(), columns)


def _stored(rows: Iterable[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows read back from events: NUMERIC values as the numbers the rollups hold."""
    return [(*row[:4], _number(row[4]), *row[5:]) for row in rows]


async def register_group_meters(
    conn: Connection, queries: Mapping[str, str], meters: Mapping[str, EventTypeConfig]
) -> list[str]:
    """Keep group rollups for exactly the `meters` that need them (`rollup_kind`).

    Runs in the caller's transaction, behind the ingest barrier. The types to build.
    """
    wanted = {
        event_type: GroupMeter(meter.group_by, kind, meter.property_key, 0, 0)
        for event_type, meter in meters.items()
        if (kind := rollup_kind(meter)) is not None
    }
    known = await group_meters(conn, queries)
    if known.keys() == wanted.keys() and all(known[t][:3] == m[:3] for t, m in wanted.items()):
        return []
    await conn.execute(queries["ingest_barrier"].encode())
    for event_type in sorted(known.keys() - wanted.keys()):
        await conn.execute(queries["delete_group_rollups_of"].encode(), (event_type,))
        await conn.execute(queries["forget_group_meter"].encode(), (event_type,))
    cursor = await conn.execute(queries["max_event_seq"].encode())
    row = await cursor.fetchone()
    last_seq = 0 if row is None else int(row[0])
    started = []
    for event_type, meter in sorted(wanted.items()):
        found = known.get(event_type)
        if found is not None and found[:3] == meter[:3]:
            continue
        await conn.execute(queries["delete_group_rollups_of"].encode(), (event_type,))
        await conn.execute(
            queries["register_group_meter"].encode(),
            (event_type, encode_group_by(meter.group_by), meter.kind, meter.property_key, last_seq),
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
) -> None:
    """Fold the group rollups of (customer, event type, bucket) again from active events.

    Called by `recompute_rollups` after it locked each bucket's plain rollup row, which
    an ingest of that bucket updates first: none can add to these rows meanwhile; and
    at ingest for the buckets of level meters, whose plain rollup rows that ingest
    has just locked itself.
    """
    keys = sorted(set(keys))
    # FOR SHARE: a build step of these meters (FOR UPDATE) either committed before,
    # and its events are read here as built, or waits until this transaction ends and
    # then reads the events as they are now (a void included).
    cursor = await conn.execute(
        queries["share_group_meters"].encode(), (sorted({key[1] for key in keys}),)
    )
    meters = {
        event_type: GroupMeter(decode_group_by(group_by), kind, prop, built, target)
        for event_type, group_by, kind, prop, built, target in await cursor.fetchall()
    }
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
        if meter.kind == LEVELS:
            levels = fold_levels(rows, group_by)
            partials = {key: partial for key, (partial, _) in levels.items()}
            areas = {key: area for key, (_, area) in levels.items()}
            await _upsert(conn, queries, partials, areas)
        elif meter.kind in (VALUES, DISTINCT):
            folded = fold_payloads(rows, group_by, meter.kind, meter.property_key)
            partials = {key: partial for key, (partial, _) in folded.items()}
            payloads = {key: payload for key, (_, payload) in folded.items()}
            await _upsert(conn, queries, partials, payloads=payloads)
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
    filters: Mapping[str, GroupFilter] | None,
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
    customers = customers_sql(customer_ids, params, "g.customer_id")
    sql = (
        queries["group_window_totals"]
        .replace("/*customers*/", customers)
        .replace("/*customer*/", ", g.customer_id" if by_customer else "")
        .replace("/*dims*/", ", g.group_key")
        .replace("/*filters*/", "")
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
    # Filters apply to the stored groups (a negated one keeps the null group).
    kept = [(at, found) for at, found in zip(filter_places, (filters or {}).values(), strict=True)]
    return project(result, places, kept)


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
    customers = customers_sql(customer_ids, params, "g.customer_id")
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


async def payload_values(
    conn: Connection,
    queries: Mapping[str, str],
    *,
    event_type: str,
    meter: EventTypeConfig,
    from_ms: int,
    to_ms: int,
    customer_ids: Sequence[str] | None,
) -> dict[str, MeterValue] | None:
    """A percentile or unique_count meter's value per customer with events in
    [from_ms, to_ms), from its rows' payloads; None when they cannot answer."""
    stored = (await group_meters(conn, queries)).get(event_type)
    if (
        stored is None
        or not stored.ready
        or stored[:3] != (meter.group_by, rollup_kind(meter), meter.property_key)
        or stored.kind not in (VALUES, DISTINCT)
        or from_ms % BUCKET_MS
        or to_ms % BUCKET_MS
    ):
        return None
    params: dict[str, Any] = {
        "event_type": event_type,
        "lo": from_ms // BUCKET_MS,
        "hi": to_ms // BUCKET_MS,
    }
    customers = customers_sql(customer_ids, params, "g.customer_id")
    cursor = await conn.execute(
        queries["payload_span"].replace("/*customers*/", customers).encode(), params
    )
    found: dict[str, dict[GroupKey, tuple[int, list[bytes]]]] = {}
    for customer_id, group, count, payload in await cursor.fetchall():
        if payload is None:
            return None
        groups = found.setdefault(customer_id, {})
        key = group_of_text(group)
        events, payloads = groups.get(key, (0, []))
        payloads.append(bytes(payload))
        groups[key] = (events + count, payloads)
    return {customer: payload_value(meter, spans) for customer, spans in sorted(found.items())}


def _number(value: Decimal) -> float:
    return int(value) if value == value.to_integral_value() else float(value)
