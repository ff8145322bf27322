"""Group rollups in SQLite (DESIGN §6): kept at ingest, built in the background, read per window.

`keep_group_rollups` is the one upkeep call of the ingest transaction. A meter whose
group rollups are new or whose `groupBy` changed is registered with the current last
seq as its target: ingest folds every later event, `build_step` folds the earlier
ones in writer-sized chunks, and reads use the rows only once the build is done
(before that `group_totals` answers None and the caller folds raw events). A voided
event leaves them as it leaves the plain rollups: its bucket is folded again from
the active events (`recompute_group_buckets`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

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
    merge_payloads,
    payload_value,
    positions,
    project,
    rollup_kind,
)
from meterd.meters.groups import GroupFilter, GroupKey, GroupTotal
from meterd.meters.values import MeterValue
from meterd.periods import BUCKET_MS
from meterd.rollup import ExactNumber, Partial, Point, add_exact, merge_all, parse_exact
from meterd.storage.sqlite.day_spans import split_windows, values_sql
from meterd.storage.sqlite.multirow import customers_sql, insert_rows
from meterd.storage.sqlite.rollups import loaded_total, partial_columns, stored_total

DAY_MS = 86_400_000
BUCKETS_PER_DAY = DAY_MS // BUCKET_MS
# Events folded per writer transaction by the background build.
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
        """Whether a touched bucket is folded again from its events (never merged):
        a level integral depends on the order of the bucket's events."""
        return self.kind == LEVELS

    @property
    def ready(self) -> bool:
        return self.built_seq >= self.target_seq

    def covers(self, seq: int) -> bool:
        """Whether the rows hold this event (once folded): built, or ingested after."""
        return seq <= self.built_seq or seq > self.target_seq


Areas = Mapping[GroupBucketKey, ExactNumber]


def group_meters(conn: sqlite3.Connection, queries: Mapping[str, str]) -> dict[str, GroupMeter]:
    return {
        event_type: GroupMeter(decode_group_by(group_by), kind, prop, built, target)
        for event_type, group_by, kind, prop, built, target in conn.execute(queries["group_meters"])
    }


def keep_group_rollups(
    conn: sqlite3.Connection,
    queries: Mapping[str, str],
    rows: Sequence[StoredRow],
    compacted_days: int | None,
) -> None:
    """Fold the transaction's stored rows into the group rollups of their meters.

    Rows are (seq, id, event_type, customer_id, value, metadata, ts_ms). Runs in the
    ingest transaction; with no such meter it costs one read of an empty table.
    """
    meters = group_meters(conn, queries)
    if not meters:
        return
    _add(conn, queries, rows, meters, compacted_days)


def _add(
    conn: sqlite3.Connection,
    queries: Mapping[str, str],
    rows: Iterable[StoredRow],
    meters: Mapping[str, GroupMeter],
    compacted_days: int | None,
) -> None:
    wanted = [row for row in rows if row[2] in meters]
    if not wanted:
        return
    touched = {(row[3], row[2], row[6] // BUCKET_MS) for row in wanted if meters[row[2]].refolds}
    if touched:
        recompute_group_buckets(conn, queries, touched, compacted_days)
    limit = None if compacted_days is None else compacted_days * DAY_MS
    # Sums merge in SQL; values and distinct sets merge their payloads (multisets and
    # sets do not depend on order), through the SQL functions of rollups.py.
    group_by = {t: m.group_by for t, m in meters.items() if m.kind == SUMS}
    sums = [row for row in wanted if row[2] in group_by]
    if sums:
        _upsert(conn, queries["upsert_group_rollup"], fold_groups(sums, group_by))
        late = [row for row in sums if limit is not None and row[6] < limit]
        if late:
            _upsert(conn, _daily_upsert(queries), fold_groups(late, group_by, DAY_MS))
    for event_type, meter in meters.items():
        if meter.kind not in (VALUES, DISTINCT):
            continue
        mine = [row for row in wanted if row[2] == event_type]
        if not mine:
            continue
        sql = _payload_upsert(queries["upsert_group_rollup"], meter.kind)
        for target, bucket_ms, members in (
            (sql, BUCKET_MS, mine),
            (_daily_upsert({"upsert_group_rollup": sql}), DAY_MS, _before(mine, limit)),
        ):
            if not members:
                continue
            folded = fold_payloads(
                members, {event_type: meter.group_by}, meter.kind, meter.property_key, bucket_ms
            )
            partials = {key: partial for key, (partial, _) in folded.items()}
            payloads = {key: payload for key, (_, payload) in folded.items()}
            _upsert(conn, target, partials, payloads=payloads)


def _before(rows: Sequence[StoredRow], limit: int | None) -> list[StoredRow]:
    return [] if limit is None else [row for row in rows if row[6] < limit]


def _payload_upsert(upsert: str, kind: Kind) -> str:
    merge = "concat_values" if kind == VALUES else "union_texts"
    if "payload = NULL;" not in upsert:
        raise ValueError("the group rollup upsert must end with 'payload = NULL;'")
    return upsert.replace("payload = NULL;", f"payload = {merge}(payload, excluded.payload);")


def _upsert(
    conn: sqlite3.Connection,
    sql: str,
    partials: Mapping[GroupBucketKey, Partial],
    areas: Areas | None = None,
    payloads: Mapping[GroupBucketKey, bytes] | None = None,
) -> None:
    insert_rows(
        conn,
        sql,
        [
            (
                *key,
                *partial_columns(p),
                _stored_area(areas, key),
                None if payloads is None else payloads.get(key),
            )
            for key, p in sorted(partials.items())
        ],
    )


def _stored_area(areas: Areas | None, key: GroupBucketKey) -> int | str | None:
    area = None if areas is None else areas.get(key)
    return None if area is None else stored_total(area)


def _partials(
    rows: Iterable[tuple[Any, ...]],
) -> Iterable[tuple[GroupBucketKey, Partial, ExactNumber | None, bytes | None]]:
    for row in rows:
        customer_id, event_type, bucket, group, count, total, low, high = row[:8]
        partial = Partial(
            count,
            loaded_total(total),
            low,
            high,
            Point(row[8], row[9], row[10]),
            Point(row[11], row[12], row[13]),
        )
        area = None if row[14] is None else loaded_total(row[14])
        yield (customer_id, event_type, bucket, group), partial, area, row[15]


def register_group_meters(
    conn: sqlite3.Connection, queries: Mapping[str, str], meters: Mapping[str, EventTypeConfig]
) -> list[str]:
    """Keep group rollups for exactly the `meters` that need them (`rollup_kind`).

    A new meter, or one whose groupBy, kind or property changed, starts from no rows
    with a build up to the current last seq; a meter no longer wanted loses its rows.
    The types to build.
    """
    wanted = {
        event_type: GroupMeter(meter.group_by, kind, meter.property_key, 0, 0)
        for event_type, meter in meters.items()
        if (kind := rollup_kind(meter)) is not None
    }
    known = group_meters(conn, queries)
    for event_type in sorted(known.keys() - wanted.keys()):
        _drop(conn, queries, event_type)
        conn.execute(queries["forget_group_meter"], (event_type,))
    last_seq = conn.execute(queries["max_seq"]).fetchone()[0]
    started = []
    for event_type, meter in sorted(wanted.items()):
        found = known.get(event_type)
        if found is not None and found[:3] == meter[:3]:
            continue
        _drop(conn, queries, event_type)
        conn.execute(
            queries["register_group_meter"],
            (event_type, encode_group_by(meter.group_by), meter.kind, meter.property_key, last_seq),
        )
        started.append(event_type)
    return started


def _drop(conn: sqlite3.Connection, queries: Mapping[str, str], event_type: str) -> None:
    conn.execute(queries["delete_group_rollups_of"], (event_type,))
    conn.execute(queries["delete_daily_group_rollups_of"], (event_type,))


def restart_group_builds(conn: sqlite3.Connection, queries: Mapping[str, str]) -> None:
    """`meterd rebuild`: every grouped meter's rows go, and are built again."""
    conn.execute(queries["delete_all_group_rollups"])
    conn.execute(queries["delete_all_daily_group_rollups"])
    last_seq = conn.execute(queries["max_seq"]).fetchone()[0]
    conn.execute(queries["restart_group_builds"], (last_seq,))


def build_step(
    conn: sqlite3.Connection, queries: Mapping[str, str], compacted_days: int | None
) -> int:
    """Fold the next chunk of one unbuilt meter's events; the events folded (0: all built)."""
    meters = group_meters(conn, queries)
    for event_type, meter in sorted(meters.items()):
        if meter.ready:
            continue
        rows = conn.execute(
            queries["group_build_events"],
            (event_type, meter.built_seq, meter.target_seq, BUILD_CHUNK),
        ).fetchall()
        done = meter.target_seq if len(rows) < BUILD_CHUNK else rows[-1][0]
        conn.execute(queries["set_built_seq"], (done, event_type))
        # Folded as covered by the new mark (a level bucket is folded whole again).
        _add(conn, queries, rows, {event_type: meter._replace(built_seq=done)}, compacted_days)
        return max(len(rows), 1)
    return 0


def recompute_group_buckets(
    conn: sqlite3.Connection,
    queries: Mapping[str, str],
    keys: Iterable[tuple[str, str, int]],
    compacted_days: int | None,
) -> None:
    """Fold the group rollups of (customer, event type, bucket) again from active events.

    Called wherever the plain rollups are recomputed (a void, an amend), and for the
    buckets of level meters at ingest. Only events the rows cover are folded: the
    rest are still to come from the build.
    """
    meters = group_meters(conn, queries)
    days = set()
    for customer_id, event_type, bucket in sorted(set(keys)):
        meter = meters.get(event_type)
        if meter is None:
            continue
        conn.execute(queries["delete_group_bucket"], (customer_id, event_type, bucket))
        start = bucket * BUCKET_MS
        rows = [
            row
            for row in conn.execute(
                queries["group_bucket_events"], (customer_id, start, start + BUCKET_MS, event_type)
            )
            if meter.covers(row[0])
        ]
        group_by = {event_type: meter.group_by}
        upsert = queries["upsert_group_rollup"]
        if meter.kind == LEVELS:
            levels = fold_levels(rows, group_by)
            partials = {key: partial for key, (partial, _) in levels.items()}
            _upsert(conn, upsert, partials, {key: area for key, (_, area) in levels.items()})
        elif meter.kind in (VALUES, DISTINCT):
            folded = fold_payloads(rows, group_by, meter.kind, meter.property_key)
            partials = {key: partial for key, (partial, _) in folded.items()}
            payloads = {key: payload for key, (_, payload) in folded.items()}
            _upsert(conn, upsert, partials, payloads=payloads)
        else:
            _upsert(conn, upsert, fold_groups(rows, group_by))
        day = bucket // BUCKETS_PER_DAY
        if compacted_days is not None and day < compacted_days:
            days.add((customer_id, event_type, day))
    for customer_id, event_type, day in sorted(days):
        meter = meters[event_type]
        conn.execute(queries["delete_daily_group_day"], (customer_id, event_type, day))
        first = day * BUCKETS_PER_DAY
        stored = conn.execute(
            queries["customer_group_rollups_between"],
            (customer_id, event_type, first, first + BUCKETS_PER_DAY),
        )
        daily, daily_areas, daily_payloads = _by_day(_partials(stored), meter.kind)
        _upsert(conn, _daily_upsert(queries), daily, daily_areas, daily_payloads)


def compact_group_days(
    conn: sqlite3.Connection, queries: Mapping[str, str], first_day: int, end_day: int
) -> None:
    """Fold the group rollups of whole UTC days [first_day, end_day) into daily rows."""
    kinds = {event_type: meter.kind for event_type, meter in group_meters(conn, queries).items()}
    rows = conn.execute(
        queries["group_rollups_between"], (first_day * BUCKETS_PER_DAY, end_day * BUCKETS_PER_DAY)
    )
    by_kind: dict[Kind, list[tuple[GroupBucketKey, Partial, ExactNumber | None, bytes | None]]]
    by_kind = {}
    for row in _partials(rows):
        by_kind.setdefault(kinds.get(row[0][1], SUMS), []).append(row)
    for kind, members in by_kind.items():
        partials, areas, payloads = _by_day(members, kind)
        _upsert(conn, _daily_upsert(queries), partials, areas, payloads)


def _by_day(
    rows: Iterable[tuple[GroupBucketKey, Partial, ExactNumber | None, bytes | None]],
    kind: Kind,
) -> tuple[dict[GroupBucketKey, Partial], Areas, dict[GroupBucketKey, bytes]]:
    """15-minute rows (of meters of one kind) folded per UTC day: level integrals
    joined in time order, payloads merged."""
    runs: dict[GroupBucketKey, list[tuple[Partial, ExactNumber | None, bytes | None]]] = {}
    for (customer_id, event_type, bucket, group), partial, area, payload in rows:
        key = (customer_id, event_type, bucket // BUCKETS_PER_DAY, group)
        runs.setdefault(key, []).append((partial, area, payload))
    partials: dict[GroupBucketKey, Partial] = {}
    areas: dict[GroupBucketKey, ExactNumber] = {}
    payloads: dict[GroupBucketKey, bytes] = {}
    for key, members in runs.items():
        members.sort(key=lambda member: member[0].first)
        merged = merge_all(partial for partial, _, _ in members)
        assert merged is not None
        partials[key] = merged
        if kind == LEVELS:
            joined = join_levels(
                Level(p.count, p.first, p.last, a) for p, a, _ in members if a is not None
            )
            assert joined is not None
            areas[key] = joined.area
        elif kind in (VALUES, DISTINCT):
            payloads[key] = merge_payloads(kind, (b for _, _, b in members if b is not None))
    return partials, areas, payloads


def _daily_upsert(queries: Mapping[str, str]) -> str:
    return queries["upsert_group_rollup"].replace(
        "INSERT INTO group_rollups ", "INSERT INTO daily_group_rollups ", 1
    )


def group_totals(
    conn: sqlite3.Connection,
    queries: Mapping[str, str],
    *,
    event_type: str,
    windows: Sequence[tuple[int, int]],
    group_by: Sequence[str],
    by_customer: bool,
    customer_ids: Sequence[str] | None,
    filters: Mapping[str, GroupFilter] | None,
    compacted_days: int | None,
) -> list[GroupTotal] | None:
    """Group rollups folded per window, [customer] and group; None when they cannot answer.

    They cannot when the meter has no built group rollups, when a wanted dimension or
    filter key is not among its stored ones, when a window is not on 15-minute
    boundaries, or when an integer total overflows: the caller folds raw events then.
    """
    meter = group_meters(conn, queries).get(event_type)
    if meter is None or not meter.ready:
        return None
    places = positions(meter.group_by, group_by)
    filter_places = positions(meter.group_by, list(filters or {}))
    spans = split_windows(windows, compacted_days)
    if places is None or filter_places is None or spans is None:
        return None
    fine, days = spans
    params: dict[str, Any] = {"event_type": event_type}
    customers = customers_sql(customer_ids, params, "g.customer_id")
    sql = (
        queries["group_window_totals"]
        .replace("/*fine*/", values_sql(fine))
        .replace("/*days*/", values_sql(days))
        .replace("/*customers*/", customers)
        .replace("/*customer*/", ", customer_id" if by_customer else "")
        .replace("/*dims*/", ", group_key")
        .replace("/*filters*/", "")
    )
    try:
        rows = conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError as error:
        if "overflow" not in str(error):
            raise
        return None
    result = []
    for row in rows:
        at = 2 if by_customer else 1
        customer = row[1] if by_customer else None
        count, int_total, decimals, low, high = row[at + 1 :]
        total: ExactNumber = int_total
        for text in (decimals or "").split():
            total = add_exact(total, parse_exact(text))
        result.append(GroupTotal(row[0], customer, (row[at],), count, total, low, high))
    # Filters apply to the stored groups (a negated one keeps the null group).
    kept = [(at, found) for at, found in zip(filter_places, (filters or {}).values(), strict=True)]
    return project(result, places, kept)


def level_values(
    conn: sqlite3.Connection,
    queries: Mapping[str, str],
    *,
    event_type: str,
    group_by: Sequence[str],
    from_ms: int,
    to_ms: int,
    customer_ids: Sequence[str] | None,
    compacted_days: int | None,
) -> dict[str, MeterValue] | None:
    """A time_weighted_avg meter's value per customer over [from_ms, to_ms), from its
    level rows: each customer with events in the span or a level held into it.

    None when the rows cannot answer (not built, another groupBy, off the 15-minute
    grid): the caller integrates raw events then.
    """
    meter = group_meters(conn, queries).get(event_type)
    if meter is None or not meter.levels or not meter.ready or meter.group_by != tuple(group_by):
        return None
    spans = split_windows([(from_ms, to_ms)], compacted_days)
    if spans is None:
        return None
    fine, days = spans
    params: dict[str, Any] = {"event_type": event_type, "bucket": from_ms // BUCKET_MS}
    customers = customers_sql(customer_ids, params, "g.customer_id")
    sql = (
        queries["level_span"]
        .replace("/*fine*/", values_sql(fine))
        .replace("/*days*/", values_sql(days))
        .replace("/*customers*/", customers)
    )
    runs: dict[tuple[str, str], list[Level]] = {}
    for row in conn.execute(sql, params):
        customer_id, group, count, *points, area = row
        if area is None:
            return None
        first, last = Point(*points[:3]), Point(*points[3:])
        runs.setdefault((customer_id, group), []).append(
            Level(count, first, last, loaded_total(area))
        )
    before: dict[str, dict[GroupKey, float]] = {}
    sql = queries["levels_before_bucket"].replace("/*customers*/", customers)
    for customer_id, group, value, _ in conn.execute(sql, params):
        before.setdefault(customer_id, {})[group_of_text(group)] = value
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


def payload_values(
    conn: sqlite3.Connection,
    queries: Mapping[str, str],
    *,
    event_type: str,
    meter: EventTypeConfig,
    from_ms: int,
    to_ms: int,
    customer_ids: Sequence[str] | None,
    compacted_days: int | None,
) -> dict[str, MeterValue] | None:
    """A percentile or unique_count meter's value per customer with events in
    [from_ms, to_ms), from its rows' payloads; None when they cannot answer."""
    stored = group_meters(conn, queries).get(event_type)
    if (
        stored is None
        or not stored.ready
        or stored[:3] != (meter.group_by, rollup_kind(meter), meter.property_key)
        or stored.kind not in (VALUES, DISTINCT)
    ):
        return None
    spans = split_windows([(from_ms, to_ms)], compacted_days)
    if spans is None:
        return None
    fine, days = spans
    params: dict[str, Any] = {"event_type": event_type}
    customers = customers_sql(customer_ids, params, "g.customer_id")
    sql = (
        queries["payload_span"]
        .replace("/*fine*/", values_sql(fine))
        .replace("/*days*/", values_sql(days))
        .replace("/*customers*/", customers)
    )
    found: dict[str, dict[GroupKey, tuple[int, list[bytes]]]] = {}
    for customer_id, group, count, payload in conn.execute(sql, params):
        if payload is None:
            return None
        groups = found.setdefault(customer_id, {})
        key = group_of_text(group)
        events, payloads = groups.get(key, (0, []))
        payloads.append(payload)
        groups[key] = (events + count, payloads)
    return {
        customer_id: payload_value(meter, spans) for customer_id, spans in sorted(found.items())
    }
