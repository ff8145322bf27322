"""What a recomputed record becomes: the rule both storage backends apply when late
events and corrections touched a period (DESIGN.md section 8).

Pure: the store reads the record as it stands and the totals recomputed from the
active events' rollups, asks `plan_revision`, and writes the plan in the same
transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import msgspec

from meterd.aggregation import AggregationRow, Totals, aggregation_id
from meterd.config.model import WebhookConfig
from meterd.messages import Outgoing, adjusted_outgoing_for, outgoing_for
from meterd.meters.values import MeterValue
from meterd.periods import BUCKET_MS, PeriodBounds, PeriodCalendar


class Touched(msgspec.Struct, frozen=True, order=True):
    """One record that a late change may have altered."""

    period: str
    customer_id: str
    bounds: PeriodBounds

    @property
    def aggregation_id(self) -> str:
        return aggregation_id(self.customer_id, self.period, self.bounds.key)


class RevisionPlan(msgspec.Struct, frozen=True):
    """What to write for one touched record; every field empty means nothing changed."""

    # A closed record written for the first time (revision 1), or an open one refreshed.
    record: AggregationRow | None = None
    # An open record whose events are all voided: it goes away.
    delete_open: str | None = None
    # Revision n+1 of a closed record.
    revision: AggregationRow | None = None
    outgoing: tuple[Outgoing, ...] = ()


def touched_records(
    changes: Iterable[tuple[str, str, int]], calendars: Mapping[str, PeriodCalendar]
) -> list[Touched]:
    """The records behind (period, customer_id, bucket) changes, each once, sorted.

    Changes of periods no longer configured touch nothing.
    """
    found: set[Touched] = set()
    for period, customer_id, bucket in changes:
        calendar = calendars.get(period)
        if calendar is not None:
            found.add(Touched(period, customer_id, calendar.bounds_at(bucket * BUCKET_MS)))
    return sorted(found)


def customer_values(
    values: Mapping[str, Mapping[str, MeterValue]], customer_id: str
) -> dict[str, MeterValue]:
    """One customer's meter values by event type, from values by type and customer."""
    return {t: v[customer_id] for t, v in values.items() if customer_id in v}


def plan_revision(
    *,
    touched: Touched,
    current: AggregationRow | None,
    totals: Totals,
    closed: bool,
    now_ms: int,
    webhooks: Sequence[WebhookConfig],
) -> RevisionPlan:
    """Decide what `touched` becomes, given its record as it stands (latest revision)
    and its totals recomputed from the active events.

    A closed record is never rewritten: a change is revision n+1 with one
    `aggregation.adjusted` message. A closed period's first record for the customer
    (a late event where there was none) is written closed with `aggregation.completed`.
    Open records are live views: refreshed, or removed when nothing active is left.
    """
    if current is not None and current.status == "closed":
        if current.totals == totals:
            return RevisionPlan()
        revised = msgspec.structs.replace(
            current, totals=totals, revision=current.revision + 1, updated_ms=now_ms
        )
        return RevisionPlan(
            revision=revised,
            outgoing=tuple(adjusted_outgoing_for(revised, current.totals, webhooks)),
        )
    if totals.event_count == 0:
        return RevisionPlan() if current is None else RevisionPlan(delete_open=current.id)
    if not closed and (current is None or current.totals == totals):
        return RevisionPlan()  # open records appear when periods are aggregated
    record = AggregationRow(
        id=touched.aggregation_id,
        customer_id=touched.customer_id,
        period=touched.period,
        period_key=touched.bounds.key,
        period_start=touched.bounds.start_ms,
        period_end=touched.bounds.end_ms,
        status="closed" if closed else "open",
        totals=totals,
        created_ms=now_ms if current is None else current.created_ms,
        updated_ms=now_ms,
    )
    outgoing = tuple(outgoing_for(record, webhooks)) if closed else ()
    return RevisionPlan(record=record, outgoing=outgoing)
