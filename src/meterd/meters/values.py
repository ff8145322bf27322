"""A meter's value over a span of time, computed exactly from raw events.

This is the reference every faster path must equal, and the path itself for what
rollup partials cannot fold: `unique_count`, `percentile`, `time_weighted_avg`, and
the per-group values of meters with `groupBy`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from decimal import Context, Decimal
from fractions import Fraction

import msgspec

from meterd.config.model import EventTypeConfig
from meterd.meters.groups import (
    GroupKey,
    GroupTotal,
    MeterEvent,
    as_text,
    dimensions,
    group_key,
    metadata_of,
    sort_key,
)
from meterd.rollup import Partial, Point, add_exact, exact, json_number, merge_all, partial_of

Number = int | float
_EXACT = Context(prec=100)


class GroupValue(msgspec.Struct, frozen=True):
    """One group of a meter with `groupBy`: its dimensions, value and event count."""

    dimensions: dict[str, str | None]
    value: Number
    count: int


class MeterValue(msgspec.Struct, frozen=True):
    """A meter's value over all groups, its event count, and its groups (if grouped)."""

    value: Number | None  # None: nothing to report (no events, and no level held)
    count: int
    groups: list[GroupValue] = []


def value_of(
    meter: EventTypeConfig,
    events: Sequence[MeterEvent],
    *,
    start_ms: int,
    end_ms: int,
    level_before: MeterEvent | None = None,
) -> Number | None:
    """The op over `events` (all inside [start_ms, end_ms), sorted by (ts_ms, seq)).

    `level_before` is the last event before `start_ms` (time_weighted_avg only).
    """
    op = meter.op
    if op == "time_weighted_avg":
        return _time_weighted_avg(events, start_ms, end_ms, level_before)
    if not events:
        return None
    if op == "unique_count":
        key = meter.property_key or ""
        seen = {as_text(metadata_of(e.metadata).get(key)) for e in events}
        seen.discard(None)
        return len(seen)
    if op == "percentile":
        return nearest_rank(sorted(e.value for e in events), meter.percentile or 100.0)
    partial = merge_all(partial_of(Point(e.ts_ms, e.seq, e.value)) for e in events)
    assert partial is not None
    return partial.value(op)


def nearest_rank(ordered: Sequence[float], percentile: float) -> Number:
    """The smallest v with at least `percentile`% of values <= v (p50 of [1,2,3,4] is 2)."""
    return plain_number(ordered[nearest_rank_index(len(ordered), percentile)])


def nearest_rank_index(count: int, percentile: float) -> int:
    """The 0-based place, among `count` sorted values, of their nearest-rank percentile."""
    return max(math.ceil(Fraction(repr(percentile)) * count / 100), 1) - 1


def plain_number(value: float) -> Number:
    """Integers as int, as JSON shows them; other values as they are."""
    if isinstance(value, int) or (value.is_integer() and abs(value) < 2**53):
        return int(value)
    return value


def level_average(area: int | Decimal, start_ms: int, end_ms: int) -> Number:
    """A time-weighted average from its exact integral over [start_ms, end_ms)."""
    return json_number(Decimal(area) / (end_ms - start_ms)) if area else 0


def _time_weighted_avg(
    events: Sequence[MeterEvent], start_ms: int, end_ms: int, before: MeterEvent | None
) -> Number | None:
    if not events and (before is None or before.value == 0):
        return None
    area = time_weighted_area(events, start_ms, end_ms, before)
    return json_number(Decimal(area) / (end_ms - start_ms)) if area else 0


def time_weighted_area(
    events: Sequence[MeterEvent], start_ms: int, end_ms: int, before: MeterEvent | None
) -> int | Decimal:
    """The exact integral (value x milliseconds) of one series' level over [start_ms, end_ms).

    `events` lie inside the span, sorted; `before` is the last event before it.
    """
    level: float = before.value if before is not None else 0
    area: int | Decimal = 0
    at = start_ms
    for event in events:
        area = add_exact(area, _times(level, event.ts_ms - at))
        level, at = event.value, event.ts_ms
    return add_exact(area, _times(level, end_ms - at))


def _times(level: float, duration_ms: int) -> int | Decimal:
    number = exact(level)
    return number * duration_ms if isinstance(number, int) else number * Decimal(duration_ms)


def meter_value(
    meter: EventTypeConfig,
    events: Sequence[MeterEvent],
    *,
    start_ms: int,
    end_ms: int,
    levels_before: Iterable[MeterEvent] = (),
) -> MeterValue:
    """One customer's meter over [start_ms, end_ms): over all groups, and per group.

    `events` are the customer's events of the meter's type in the span, in any order;
    `levels_before` holds at least the last event before the span of every group
    (time_weighted_avg only; extra earlier events are ignored).
    """
    ordered = sorted(events, key=_order)
    latest = _latest_per_group(levels_before, meter.group_by)
    if not meter.group_by:
        level = latest.get(())
        value = value_of(meter, ordered, start_ms=start_ms, end_ms=end_ms, level_before=level)
        return MeterValue(value, len(ordered))
    value = value_of(meter, ordered, start_ms=start_ms, end_ms=end_ms)
    by_group: dict[GroupKey, list[MeterEvent]] = {key: [] for key in latest}
    for event in ordered:
        by_group.setdefault(group_key(metadata_of(event.metadata), meter.group_by), []).append(
            event
        )
    groups = []
    for key in sorted(by_group, key=sort_key):
        members = by_group[key]
        group_value = value_of(
            meter, members, start_ms=start_ms, end_ms=end_ms, level_before=latest.get(key)
        )
        if group_value is not None and (members or group_value != 0):
            groups.append(GroupValue(dimensions(meter.group_by, key), group_value, len(members)))
    if meter.op == "time_weighted_avg":
        # Each group is a level of its own; over all groups they add up.
        value = _sum_of_levels(meter, by_group, latest, start_ms, end_ms)
    return MeterValue(value, len(ordered), groups)


def _sum_of_levels(
    meter: EventTypeConfig,
    by_group: Mapping[GroupKey, Sequence[MeterEvent]],
    latest: Mapping[GroupKey, MeterEvent],
    start_ms: int,
    end_ms: int,
) -> Number | None:
    area: int | Decimal = 0
    held = False
    for key, members in by_group.items():
        before = latest.get(key)
        held = held or bool(members) or (before is not None and before.value != 0)
        area = add_exact(area, time_weighted_area(members, start_ms, end_ms, before))
    if not held:
        return None
    return json_number(Decimal(area) / (end_ms - start_ms)) if area else 0


def _order(event: MeterEvent) -> tuple[int, int]:
    return event.ts_ms, event.seq


def _latest_per_group(
    events: Iterable[MeterEvent], group_by: Sequence[str]
) -> dict[GroupKey, MeterEvent]:
    latest: dict[GroupKey, MeterEvent] = {}
    for event in events:
        key = group_key(metadata_of(event.metadata), group_by) if group_by else ()
        known = latest.get(key)
        if known is None or _order(event) > _order(known):
            latest[key] = event
    return latest


def partial_value(meter: EventTypeConfig, partial: Partial | None) -> Number | None:
    """The value of a foldable op from a rollup partial."""
    return None if partial is None else partial.value(meter.op)


def by_customer(events: Iterable[MeterEvent]) -> dict[str, list[MeterEvent]]:
    result: dict[str, list[MeterEvent]] = {}
    for event in events:
        result.setdefault(event.customer_id, []).append(event)
    return result


def meter_values(
    meter: EventTypeConfig,
    events: Iterable[MeterEvent],
    *,
    start_ms: int,
    end_ms: int,
    levels_before: Iterable[MeterEvent] = (),
) -> dict[str, MeterValue]:
    """`meter_value` for every customer with events in the span or a level held into it."""
    inside = by_customer(events)
    before = by_customer(levels_before)
    result = {}
    for customer_id in sorted(inside.keys() | before.keys()):
        value = meter_value(
            meter,
            inside.get(customer_id, []),
            start_ms=start_ms,
            end_ms=end_ms,
            levels_before=before.get(customer_id, []),
        )
        if value.value is not None:
            result[customer_id] = value
    return result


def meters_reading_events(meters: Mapping[str, EventTypeConfig]) -> dict[str, EventTypeConfig]:
    return {name: meter for name, meter in meters.items() if meter.reads_events}


FOLDED_IN_DATABASE = ("sum", "count", "avg", "min", "max")


def folded_value(
    op: str, *, events: int, total: int | Decimal, minimum: float, maximum: float
) -> Number:
    """The value of sum, count, avg, min or max from what a database fold returns."""
    if op == "sum":
        return json_number(total)
    if op == "count":
        return events
    if op == "avg":
        return json_number(_EXACT.divide(Decimal(total), events))
    return plain_number(minimum if op == "min" else maximum)


def grouped_value(meter: EventTypeConfig, totals: Iterable[GroupTotal]) -> MeterValue:
    """A grouped meter's value over all groups and per group, from one window's folds."""
    rows = sorted(totals, key=lambda t: sort_key(t.group))
    if not rows:
        return MeterValue(None, 0)
    events = sum(t.events for t in rows)
    total: int | Decimal = 0
    for row in rows:
        total = add_exact(total, row.total)
    value = folded_value(
        meter.op,
        events=events,
        total=total,
        minimum=min(t.minimum for t in rows),
        maximum=max(t.maximum for t in rows),
    )
    groups = [
        GroupValue(
            dimensions(meter.group_by, t.group),
            folded_value(
                meter.op, events=t.events, total=t.total, minimum=t.minimum, maximum=t.maximum
            ),
            t.events,
        )
        for t in rows
    ]
    return MeterValue(value, events, groups)
