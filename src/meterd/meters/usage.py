"""A customer's live totals for one period: rollups, plus the meters read from raw events."""

from __future__ import annotations

from collections.abc import Mapping

from meterd.aggregation import Totals, merge_meter_values, totals_of
from meterd.config.model import EVENT_OPS, EventTypeConfig, Op
from meterd.meters.values import FOLDED_IN_DATABASE, MeterValue, grouped_value, meter_value
from meterd.periods import PeriodBounds
from meterd.storage.base import Store


async def customer_totals(
    store: Store,
    *,
    customer_id: str,
    bounds: PeriodBounds,
    ops: Mapping[str, Op],
    meters: Mapping[str, EventTypeConfig],
) -> Totals:
    """What the customer's record for `bounds` holds if the period closed now."""
    totals = totals_of(await store.customer_partials(customer_id, bounds), ops)
    if not meters:
        return totals
    values: dict[str, MeterValue] = {}
    for event_type, meter in meters.items():
        if meter.op in EVENT_OPS:
            found = await store.rollup_values(
                event_type=event_type,
                meter=meter,
                from_ms=bounds.start_ms,
                to_ms=bounds.end_ms,
                customer_ids=[customer_id],
            )
            if found is not None:
                values[event_type] = found.get(customer_id, MeterValue(None, 0))
                continue
        computed = await store.meter_aggregate(
            event_type=event_type,
            meter=meter,
            customer_id=customer_id,
            from_ms=bounds.start_ms,
            to_ms=bounds.end_ms,
        )
        if computed is None and meter.group_by and meter.op in FOLDED_IN_DATABASE:
            folds = await store.group_totals(
                event_type=event_type,
                windows=[(bounds.start_ms, bounds.end_ms)],
                group_by=meter.group_by,
                by_customer=False,
                customer_ids=[customer_id],
            )
            computed = None if folds is None else grouped_value(meter, folds)
        if computed is not None:
            values[event_type] = computed
            continue
        events = await store.meter_events(
            event_type=event_type,
            from_ms=bounds.start_ms,
            to_ms=bounds.end_ms,
            customer_ids=[customer_id],
        )
        before = (
            await store.levels_before(
                event_type=event_type,
                before_ms=bounds.start_ms,
                group_by=meter.group_by,
                customer_ids=[customer_id],
            )
            if meter.op == "time_weighted_avg"
            else []
        )
        values[event_type] = meter_value(
            meter, events, start_ms=bounds.start_ms, end_ms=bounds.end_ms, levels_before=before
        )
    return merge_meter_values(totals, values)
