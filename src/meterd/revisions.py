"""What a recomputed record becomes: the rule both storage backends apply when late
events and corrections touched a period (DESIGN.md section 8).

Pure: the store reads the record as it stands and the totals recomputed from the
active events' rollups, asks `plan_revision`, and writes the plan in the same
transaction. Which records a late change touches is decided here too: its own period,
and for a `time_weighted_avg` meter every later closed period its level held into
(`LevelEnd` says how far, from the events the store reads for it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import msgspec

from meterd.aggregation import AggregationRow, Totals, aggregation_id
from meterd.config.model import EventTypeConfig, WebhookConfig
from meterd.messages import Outgoing, adjusted_outgoing_for, outgoing_for
from meterd.meters.groups import GroupKey, group_key, metadata_of
from meterd.meters.values import MeterValue
from meterd.periods import BUCKET_MS, PeriodBounds, PeriodCalendar

# The period of a late change written by a correction: it may alter a record of any period.
ANY_PERIOD = "*"
# Late changes consumed per transaction, and the records they may touch before the
# transaction stops taking more (a level carried over many periods touches many).
SETTLE_BATCH = 500
TOUCHED_BATCH = 1000
# Later events read per query while looking for the end of a changed level.
LEVEL_PAGE = 200


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


class LevelCarry(NamedTuple):
    """A change to a customer's time-weighted levels (DESIGN.md section 6): a level holds
    until the customer's next event of that type and group, so the change reaches from
    `from_ms` to `until_ms`, or on past every closed period if `until_ms` is None."""

    customer_id: str
    period_names: tuple[str, ...]
    from_ms: int
    until_ms: int | None


def change_periods(period: str, calendars: Mapping[str, PeriodCalendar]) -> tuple[str, ...]:
    """The period names a late change noted for `period` may touch."""
    return tuple(calendars) if period == ANY_PERIOD else (period,)


def time_weighted(meters: Mapping[str, EventTypeConfig] | None) -> dict[str, EventTypeConfig]:
    """The meters whose levels carry across period boundaries."""
    return {t: m for t, m in (meters or {}).items() if m.op == "time_weighted_avg"}


class LevelEnd:
    """Finds where a change in one 15-minute bucket stops mattering to a time-weighted
    meter: the first later active event of every series (group) that had an event in
    the bucket, voided ones included (a void changes its series' level too).

    The store reads the bucket's events with `bucket_params`, then, while `next_page`
    gives parameters, the customer's later active events of the meter's type as
    (ts_ms, seq, metadata), oldest first, `LEVEL_PAGE` at a time, and passes each page
    to `see`.
    """

    def __init__(
        self,
        meter: EventTypeConfig,
        customer_id: str,
        bucket: int,
        bucket_metadata: Iterable[str | bytes | None],
    ) -> None:
        self.group_by = meter.group_by
        self.customer_id = customer_id
        self.from_ms = (bucket + 1) * BUCKET_MS
        self.waiting: set[GroupKey] = {self._series(raw) for raw in bucket_metadata}
        self.until_ms: int | None = None
        self._after: tuple[int, int] | None = (self.from_ms, -1)

    @staticmethod
    def bucket_params(customer_id: str, bucket: int) -> dict[str, int | str]:
        start = bucket * BUCKET_MS
        return {"customer": customer_id, "from_ms": start, "to_ms": start + BUCKET_MS}

    def _series(self, raw: str | bytes | None) -> GroupKey:
        return group_key(metadata_of(raw), self.group_by) if self.group_by else ()

    def next_page(self) -> dict[str, int | str] | None:
        """The parameters of the next page to read; None once nothing is left to find."""
        if not self.waiting or self._after is None:
            return None
        ts_ms, seq = self._after
        return {"customer": self.customer_id, "ts": ts_ms, "seq": seq, "limit": LEVEL_PAGE}

    def see(self, page: Sequence[tuple[int, int, str | bytes | None]]) -> None:
        for ts_ms, _, raw in page:
            series = self._series(raw)
            if series in self.waiting:
                self.waiting.discard(series)
                self.until_ms = ts_ms
                if not self.waiting:
                    break
        full = len(page) == LEVEL_PAGE
        self._after = (page[-1][0], page[-1][1]) if full else None

    def carry(self, period_names: tuple[str, ...]) -> LevelCarry | None:
        """How far the change reaches; None if the bucket held no event of the meter."""
        if self.until_ms is None and not self.waiting:
            return None
        until_ms = None if self.waiting else self.until_ms
        return LevelCarry(self.customer_id, period_names, self.from_ms, until_ms)


def touched_records(
    changes: Iterable[tuple[str, str, int]],
    calendars: Mapping[str, PeriodCalendar],
    carries: Iterable[LevelCarry] = (),
    closed_until: Mapping[str, int] | None = None,
) -> list[Touched]:
    """The records behind (period, customer_id, bucket) changes, each once, sorted.

    Each level carry adds the records from the one after its bucket up to its end,
    among the periods closed until `closed_until` (open records are live views).
    Changes of periods no longer configured touch nothing.
    """
    found: set[Touched] = set()
    for period, customer_id, bucket in changes:
        calendar = calendars.get(period)
        if calendar is not None:
            found.add(Touched(period, customer_id, calendar.bounds_at(bucket * BUCKET_MS)))
    for carry in carries:
        for name in carry.period_names:
            calendar = calendars.get(name)
            mark = (closed_until or {}).get(name)
            if calendar is None or mark is None:
                continue
            end = mark if carry.until_ms is None else min(mark, carry.until_ms)
            found.update(
                Touched(name, carry.customer_id, bounds)
                for bounds in calendar.bounds_between(carry.from_ms, end)
            )
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
    if not totals.events:
        # Nothing active, and no time-weighted level held into the period.
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
