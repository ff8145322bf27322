"""Group partials: the rollups of meters with `groupBy`, one per group (DESIGN §6).

For a grouped meter of a foldable op (sum, count, avg, min, max) meterd keeps a
`Partial` per (customer, event type, 15-minute bucket, group), next to the plain
rollups and in the same transaction, so grouped live usage, records and the usage
query read buckets, not events. A group is stored as the JSON array of its texts
in `groupBy` order (`group_text`), so reads can pick any of its dimensions.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, NamedTuple

import msgspec

from meterd.config.model import EventTypeConfig
from meterd.meters.groups import (
    GroupFilter,
    GroupKey,
    GroupTotal,
    as_text,
    dimensions,
    group_key,
    metadata_of,
    sort_key,
)
from meterd.meters.values import (
    FOLDED_IN_DATABASE,
    GroupValue,
    MeterValue,
    Number,
    level_average,
    nearest_rank,
)
from meterd.periods import BUCKET_MS
from meterd.rollup import ExactNumber, Partial, Point, add_exact, exact, merge_all, partial_of

# A stored event as the ingest transaction holds it: (seq, id, event_type,
# customer_id, value, metadata JSON text, ts_ms), possibly with more columns after.
StoredRow = Sequence[Any]
# customer_id, event_type, bucket (15-minute or day number), group text.
GroupBucketKey = tuple[str, str, int, str]

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(list[str | None])


def group_text(key: GroupKey) -> str:
    """A group as stored: the JSON array of its dimension texts (null for none)."""
    return _encoder.encode(list(key)).decode()


def group_of_text(text: str) -> GroupKey:
    return tuple(_decoder.decode(text))


def fold_groups(
    rows: Iterable[StoredRow],
    group_by: Mapping[str, Sequence[str]],
    bucket_ms: int = BUCKET_MS,
) -> dict[GroupBucketKey, Partial]:
    """Partials per (customer, event type, bucket, group) of the rows whose type is grouped.

    `group_by` maps each grouped event type to its dimension keys; other rows are
    left out, so a config without groupBy costs one dictionary lookup per event.
    """
    partials: dict[GroupBucketKey, Partial] = {}
    for row in rows:
        keys = group_by.get(row[2])
        if keys is None:
            continue
        seq, event_type, customer_id, value, ts_ms = row[0], row[2], row[3], row[4], row[6]
        text = group_text(group_key(metadata_of(row[5]), keys))
        key = (customer_id, event_type, ts_ms // bucket_ms, text)
        point = partial_of(Point(ts_ms, seq, value))
        known = partials.get(key)
        partials[key] = point if known is None else known.merge(point)
    return partials


def merge_into(
    target: dict[GroupBucketKey, Partial], more: Iterable[tuple[GroupBucketKey, Partial]]
) -> None:
    for key, partial in more:
        known = target.get(key)
        target[key] = partial if known is None else known.merge(partial)


def decode_group_by(text: str) -> tuple[str, ...]:
    return tuple(msgspec.json.decode(text, type=list[str]))


def encode_group_by(keys: Sequence[str]) -> str:
    return _encoder.encode(list(keys)).decode()


def positions(registered: Sequence[str], wanted: Sequence[str]) -> list[int] | None:
    """Where each wanted dimension sits in a stored group; None if one is not stored."""
    try:
        return [list(registered).index(key) for key in wanted]
    except ValueError:
        return None


def project(
    totals: Iterable[GroupTotal],
    places: Sequence[int],
    filters: Sequence[tuple[int, GroupFilter]] = (),
) -> list[GroupTotal]:
    """Totals per stored group (its JSON text as the only key part) folded per wanted
    dimensions: `places` picks them from the stored group, in the wanted order.
    `filters` keep the stored groups whose value at each place the filter keeps."""
    merged: dict[tuple[int, str | None, GroupKey], GroupTotal] = {}
    for row in totals:
        [text] = row.group
        assert isinstance(text, str)
        stored = group_of_text(text)
        if not all(found.matches(stored[at]) for at, found in filters):
            continue
        group = tuple(stored[i] for i in places)
        key = (row.place, row.customer_id, group)
        known = merged.get(key)
        merged[key] = (
            row._replace(group=group)
            if known is None
            else known._replace(
                events=known.events + row.events,
                total=add_exact(known.total, row.total),
                minimum=min(known.minimum, row.minimum),
                maximum=max(known.maximum, row.maximum),
            )
        )
    return list(merged.values())


# -- levels (time_weighted_avg) ---------------------------------------------------
#
# A level holds from its event until the series' next event. Over a run of events in
# (ts, seq) order, `area` is the exact integral of the level from the first event to
# the last. Two runs A then B (all of A before all of B) join as
#     area(A + B) = area(A) + area(B) + A.last.value * (B.first.ts - A.last.ts),
# so disjoint 15-minute buckets (and days) fold in time order. A period [S, E) is
#     before * (P.first.ts - S) + area(P) + P.last.value * (E - P.last.ts)
# with P the period's buckets folded and `before` the last level before S.


class Level(NamedTuple):
    """One series' events over a span, as the level integral needs them."""

    events: int
    first: Point
    last: Point
    area: ExactNumber


def times(level: float, duration_ms: int) -> ExactNumber:
    number = exact(level)
    return number * duration_ms if isinstance(number, int) else number * Decimal(duration_ms)


def join_levels(ordered: Iterable[Level]) -> Level | None:
    """Runs in time order folded into one."""
    result: Level | None = None
    for run in ordered:
        if result is None:
            result = run
            continue
        gap = times(result.last.value, run.first.ts_ms - result.last.ts_ms)
        result = Level(
            result.events + run.events,
            result.first,
            run.last,
            add_exact(add_exact(result.area, run.area), gap),
        )
    return result


def level_of_points(points: Iterable[Point]) -> Level | None:
    return join_levels(Level(1, p, p, 0) for p in sorted(points))


def fold_levels(
    rows: Iterable[StoredRow],
    group_by: Mapping[str, Sequence[str]],
    bucket_ms: int = BUCKET_MS,
) -> dict[GroupBucketKey, tuple[Partial, ExactNumber]]:
    """Like `fold_groups`, with each bucket's level integral from its first to last event."""
    points: dict[GroupBucketKey, list[Point]] = {}
    for row in rows:
        keys = group_by.get(row[2])
        if keys is None:
            continue
        text = group_text(group_key(metadata_of(row[5]), keys))
        key = (row[3], row[2], row[6] // bucket_ms, text)
        points.setdefault(key, []).append(Point(row[6], row[0], row[4]))
    result = {}
    for key, members in points.items():
        partial = merge_all(partial_of(p) for p in members)
        level = level_of_points(members)
        assert partial is not None and level is not None
        result[key] = (partial, level.area)
    return result


def level_value(
    group_by: Sequence[str],
    spans: Mapping[GroupKey, Level],
    before: Mapping[GroupKey, float],
    start_ms: int,
    end_ms: int,
) -> MeterValue:
    """A time_weighted_avg meter's value from its levels: what `meter_value` gives from events.

    `spans` holds each group's events in [start_ms, end_ms) folded; `before` the level
    of each group in force at start_ms (the last event before it).
    """
    areas: dict[GroupKey, ExactNumber] = {}
    for key in spans.keys() | before.keys():
        span = spans.get(key)
        level = before.get(key, 0)
        if span is None:
            areas[key] = times(level, end_ms - start_ms)
            continue
        area = add_exact(times(level, span.first.ts_ms - start_ms), span.area)
        areas[key] = add_exact(area, times(span.last.value, end_ms - span.last.ts_ms))
    count = sum(span.events for span in spans.values())
    held = bool(spans) or any(value != 0 for value in before.values())
    if not held:
        return MeterValue(None, 0)
    total: ExactNumber = 0
    for area in areas.values():
        total = add_exact(total, area)
    value = level_average(total, start_ms, end_ms)
    if not group_by:
        return MeterValue(value, count)
    groups = []
    for key in sorted(areas, key=sort_key):
        span = spans.get(key)
        if span is None and before.get(key, 0) == 0:
            continue
        group_value = level_average(areas[key], start_ms, end_ms)
        members = 0 if span is None else span.events
        if members or group_value != 0:
            groups.append(GroupValue(dimensions(group_by, key), group_value, members))
    return MeterValue(value, count, groups)


# -- kinds of rollup rows, and the payloads of percentile and unique_count ----------
#
# "sums": grouped meters of sum, count, avg, min or max (rows merge in SQL). "levels":
# time_weighted_avg (rows keep `area`). "values": percentile (rows keep every value of
# the bucket, sorted, as packed doubles). "distinct": unique_count (rows keep the
# bucket's distinct property texts, sorted, as a JSON list). The last three are folded
# again from the bucket's events when touched, never merged.

Kind = str
SUMS, LEVELS, VALUES, DISTINCT = "sums", "levels", "values", "distinct"


def rollup_kind(meter: EventTypeConfig) -> Kind | None:
    """What rollup rows a meter keeps, if any (a plain foldable meter needs none here)."""
    if meter.op == "time_weighted_avg":
        return LEVELS
    if meter.op == "percentile":
        return VALUES
    if meter.op == "unique_count":
        return DISTINCT
    # Grouped first and last keep no rows: their reads fold raw events.
    return SUMS if meter.group_by and meter.op in FOLDED_IN_DATABASE else None


_texts = msgspec.json.Decoder(list[str])


def payload_of(kind: Kind, points: Sequence[tuple[float, str | None]]) -> bytes:
    """A bucket's payload from its (value, property text) pairs."""
    if kind == VALUES:
        return array("d", sorted(value for value, _ in points)).tobytes()
    return _encoder.encode(sorted({text for _, text in points if text is not None}))


def merge_payloads(kind: Kind, payloads: Iterable[bytes]) -> bytes:
    if kind == VALUES:
        values = array("d")
        for payload in payloads:
            values.frombytes(payload)
        return array("d", sorted(values)).tobytes()
    texts: set[str] = set()
    for payload in payloads:
        texts.update(_texts.decode(payload))
    return _encoder.encode(sorted(texts))


def fold_payloads(
    rows: Iterable[StoredRow],
    group_by: Mapping[str, Sequence[str]],
    kind: Kind,
    property_key: str | None,
    bucket_ms: int = BUCKET_MS,
) -> dict[GroupBucketKey, tuple[Partial, bytes]]:
    """Like `fold_groups`, with each bucket's payload for `kind` (values or distinct)."""
    points: dict[GroupBucketKey, list[tuple[Point, str | None]]] = {}
    for row in rows:
        keys = group_by.get(row[2])
        if keys is None:
            continue
        metadata = metadata_of(row[5])
        text = group_text(group_key(metadata, keys))
        key = (row[3], row[2], row[6] // bucket_ms, text)
        prop = as_text(metadata.get(property_key or "")) if kind == DISTINCT else None
        points.setdefault(key, []).append((Point(row[6], row[0], row[4]), prop))
    result = {}
    for key, members in points.items():
        partial = merge_all(partial_of(p) for p, _ in members)
        assert partial is not None
        result[key] = (partial, payload_of(kind, [(p.value, t) for p, t in members]))
    return result


def payload_value(
    meter: EventTypeConfig, spans: Mapping[GroupKey, tuple[int, Sequence[bytes]]]
) -> MeterValue:
    """A percentile or unique_count meter's value from its buckets' payloads: what
    `meter_value` gives from the events. `spans` maps each group to its event count
    and payloads over the period."""
    if not spans:
        return MeterValue(None, 0)

    def value_of(payloads: Iterable[bytes]) -> Number:
        if meter.op == "percentile":
            values = array("d")
            for payload in payloads:
                values.frombytes(payload)
            ordered = sorted(values)
            return nearest_rank(ordered, meter.percentile or 100.0)
        texts: set[str] = set()
        for payload in payloads:
            texts.update(_texts.decode(payload))
        return len(texts)

    count = sum(events for events, _ in spans.values())
    value = value_of(p for _, payloads in spans.values() for p in payloads)
    if not meter.group_by:
        return MeterValue(value, count)
    groups = [
        GroupValue(dimensions(meter.group_by, key), value_of(spans[key][1]), spans[key][0])
        for key in sorted(spans, key=sort_key)
    ]
    return MeterValue(value, count, groups)
