"""Aggregation records: a customer's totals for one period, built from rollup partials."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal

import msgspec

from meterd.config.model import FOLDABLE_OPS, EventTypeConfig, Op, SystemConfig
from meterd.meters.values import GroupValue, MeterValue
from meterd.periods import PeriodBounds, PeriodCalendar
from meterd.rollup import Partial

Status = Literal["open", "closed"]


class Totals(msgspec.Struct, frozen=True, omit_defaults=True):
    """The per-event-type values of one customer over one period.

    `groups` holds, for meters with `groupBy`, the value per group; `events` stays
    the value over all groups.
    """

    events: dict[str, int | float]
    event_counts: dict[str, int]
    event_count: int
    groups: dict[str, list[GroupValue]] = {}


class AggregationRow(msgspec.Struct, frozen=True):
    """An aggregation record as stored."""

    id: str
    customer_id: str
    period: str
    period_key: str
    period_start: int
    period_end: int  # exclusive
    status: Status
    totals: Totals
    created_ms: int
    updated_ms: int
    # Webhook deliveries of this record: how many, how many delivered, when, attempts.
    deliveries: int = 0
    delivered: int = 0
    delivered_ms: int | None = None
    attempts: int = 0
    # 1 as closed; a late event or a correction in a closed period adds revisions.
    revision: int = 1


def aggregation_id(customer_id: str, period: str, period_key: str) -> str:
    return f"{customer_id}_{period}_{period_key}"


def totals_of(partials: Mapping[str, Partial], ops: Mapping[str, Op]) -> Totals:
    """Values by the configured op; event types no longer configured are left out.

    Ops that partials cannot fold are left out too: `with_meter_values` adds them.
    """
    events: dict[str, int | float] = {}
    counts: dict[str, int] = {}
    for event_type in sorted(partials):
        op = ops.get(event_type)
        if op is None or op not in FOLDABLE_OPS:
            continue
        partial = partials[event_type]
        events[event_type] = partial.value(op)
        counts[event_type] = partial.count
    return Totals(events, counts, sum(counts.values()))


def group_by_customer(
    rows: Iterable[tuple[str, str, Partial]],
) -> dict[str, dict[str, Partial]]:
    """Merge (customer_id, event_type, partial) rows into one partial per customer and type."""
    grouped: dict[str, dict[str, Partial]] = {}
    for customer_id, event_type, partial in rows:
        by_type = grouped.setdefault(customer_id, {})
        known = by_type.get(event_type)
        by_type[event_type] = partial if known is None else known.merge(partial)
    return grouped


def build_rows(
    rows: Iterable[tuple[str, str, Partial]],
    *,
    period: str,
    bounds: PeriodBounds,
    ops: Mapping[str, Op],
    status: Status,
    now_ms: int,
) -> list[AggregationRow]:
    """One aggregation row per customer that has events of a configured type in `bounds`."""
    result = []
    for customer_id, partials in group_by_customer(rows).items():
        totals = totals_of(partials, ops)
        if totals.event_count == 0:
            continue
        result.append(
            AggregationRow(
                id=aggregation_id(customer_id, period, bounds.key),
                customer_id=customer_id,
                period=period,
                period_key=bounds.key,
                period_start=bounds.start_ms,
                period_end=bounds.end_ms,
                status=status,
                totals=totals,
                created_ms=now_ms,
                updated_ms=now_ms,
            )
        )
    return result


def merge_meter_values(totals: Totals, values: Mapping[str, MeterValue]) -> Totals:
    """`totals` with the meters computed from raw events (`values`, by type) put in."""
    events = {k: v for k, v in totals.events.items() if k not in values}
    counts = {k: v for k, v in totals.event_counts.items() if k not in values}
    groups = {k: v for k, v in totals.groups.items() if k not in values}
    for event_type, meter in values.items():
        if meter.value is None:
            continue
        events[event_type] = meter.value
        counts[event_type] = meter.count
        if meter.groups:
            groups[event_type] = meter.groups
    order = sorted(events)
    return Totals(
        events={k: events[k] for k in order},
        event_counts={k: counts[k] for k in order},
        event_count=sum(counts.values()),
        groups={k: groups[k] for k in sorted(groups)},
    )


def with_meter_values(
    rows: Iterable[AggregationRow],
    values: Mapping[str, Mapping[str, MeterValue]],
    *,
    period: str,
    bounds: PeriodBounds,
    status: Status,
    now_ms: int,
) -> list[AggregationRow]:
    """Period rows from partials, completed with meter values by event type and customer.

    A customer with no events in the period still gets a row when a
    time-weighted level it holds makes a value.
    """
    by_customer = {row.customer_id: row for row in rows}
    customers = set(by_customer)
    for per_customer in values.values():
        customers.update(per_customer)
    result = []
    for customer_id in sorted(customers):
        row = by_customer.get(customer_id)
        totals = row.totals if row is not None else Totals({}, {}, 0)
        mine = {t: v[customer_id] for t, v in values.items() if customer_id in v}
        merged = merge_meter_values(totals, mine)
        if not merged.events:
            continue
        result.append(
            AggregationRow(
                id=aggregation_id(customer_id, period, bounds.key),
                customer_id=customer_id,
                period=period,
                period_key=bounds.key,
                period_start=bounds.start_ms,
                period_end=bounds.end_ms,
                status=status,
                totals=merged,
                created_ms=now_ms,
                updated_ms=now_ms,
            )
        )
    return result


def meters_for(config: SystemConfig) -> dict[str, EventTypeConfig]:
    """The meters whose values come from raw events rather than partials."""
    return {name: meter for name, meter in config.events.items() if meter.reads_events}


def calendars_for(config: SystemConfig) -> dict[str, PeriodCalendar]:
    """The configured periods, by name, in the configured timezone."""
    return {period.name: PeriodCalendar(period, config.timezone) for period in config.periods}


def default_period(calendars: Mapping[str, PeriodCalendar]) -> str:
    """The period usage is shown for when none is named: monthly if configured."""
    return "monthly" if "monthly" in calendars else next(iter(calendars))


def ops_for(config: SystemConfig) -> dict[str, Op]:
    return {event_type: event.op for event_type, event in config.events.items()}


def split_aggregation_id(
    aggregation_id: str, calendars: Mapping[str, PeriodCalendar]
) -> tuple[str, PeriodCalendar, PeriodBounds] | None:
    """Customer, period and bounds named by `{customerId}_{period}_{periodKey}`.

    Customer ids may hold underscores, so the period is found from the right.
    """
    rest, _, key = aggregation_id.rpartition("_")
    # Longest name first: a period "x_daily" must win over "daily".
    for name in sorted(calendars, key=len, reverse=True):
        customer_id = rest.removesuffix("_" + name)
        if customer_id != rest and customer_id:
            try:
                return customer_id, calendars[name], calendars[name].bounds_for_key(key)
            except (ValueError, OverflowError):  # malformed, or beyond year 9999
                return None
    return None
