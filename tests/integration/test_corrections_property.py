"""Random streams of events, voids, amends and late events, on both backends, checked
after every settle against a naive reference over the events that are still active.

Time runs from 2025-03-27 to 2025-04-02 in Europe/Oslo (DST starts 2025-03-30, March
closes at local midnight), so events land before and after the close of every kind
of period. The reference shares no code with meterd's rollups or period arithmetic
(it is the one of test_aggregation_property). A second stream adds the meters that read
raw events: `time_weighted_avg` (plain and by group), whose level holds from an event to
the customer's next one of that group across period boundaries, so a change revises
every later period up to that event; `percentile`, `unique_count` and a `sum` by group.
After each settle:

- every closed record's latest revision equals the reference over the active events;
- every period that is closed has a record for each customer with active events in it
  or a non-zero level held into it;
- the outbox holds one `aggregation.completed` per record and one
  `aggregation.adjusted` per later revision (2, 3, ... each once), the last of which
  carries the record's totals, and `previous` is the revision before.
"""

from __future__ import annotations

import bisect
import json
import math
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

import msgspec
import pytest

from meterd import corrections
from meterd.aggregation import Totals
from meterd.closing import PeriodCloser
from meterd.config.model import EventTypeConfig, SystemConfig, WebhookConfig
from meterd.errors import Conflict
from meterd.ingest import NewEvent
from meterd.storage.base import AggregationQuery, EventQuery, KeyIdentity, Store
from tests.integration.test_aggregation_property import (
    CUSTOM,
    HOUR,
    MINUTE,
    OPS,
    PERIODS,
    QUARTER,
    Arrival,
    Event,
    ReferenceCalendar,
    Scenario,
    Span,
    expected_totals_problems,
    groups,
    record_id,
    utc,
)

pytestmark = pytest.mark.ingest_process

START = utc(2025, 3, 27, 6)
ROUNDS = 12
ROUND_MS = 12 * HOUR
FINAL = utc(2026, 6, 1)
KEY = KeyIdentity("reference-test", "mk_refer")
CUSTOMERS = ("a", "b_1")
VALUES = (0.1, 0.2, -1.5, 3, 2.5, 0.001, 7, 0)
REGIONS = ("eu", "us")
USERS = ("u1", "u2", "u3")
# The meters that read raw events, with the metadata keys the stream fills.
METERS = {
    "t_level": EventTypeConfig("time_weighted_avg"),
    "t_glevel": EventTypeConfig("time_weighted_avg", group_by=("region",)),
    "t_p50": EventTypeConfig("percentile", percentile=50),
    "t_users": EventTypeConfig("unique_count", property_key="user"),
    "t_gsum": EventTypeConfig("sum", group_by=("region",)),
}


@dataclass(frozen=True)
class Variant:
    """What a stream meters: the event types it sends, the periods, when it ends."""

    event_types: tuple[str, ...]
    periods: tuple[str, ...]
    final_ms: int
    meters: dict[str, EventTypeConfig]


FOLDABLE = Variant(tuple(OPS), PERIODS, FINAL, meters={})
# Levels fill every period up to the last one closed: no yearly period, and an end a
# few days after the stream's, so the final close stays a few hundred records (April's
# monthly record stays open; March's closes during the stream).
METERED = Variant(
    (*OPS, *METERS, "t_level", "t_glevel"),
    tuple(p for p in PERIODS if p != "yearly"),
    utc(2025, 4, 8),
    meters=METERS,
)


def scenario() -> Scenario:
    return Scenario(
        timezone="Europe/Oslo",
        custom_every_ms=3 * HOUR + 45 * MINUTE,
        custom_anchor_ms=utc(2024, 1, 15),
        grace_ms=0,
        steps=(),
        pause_after=None,
        pause_now_ms=0,
        page_size=1000,
    )


def config(variant: Variant) -> SystemConfig:
    hook = WebhookConfig(url="http://127.0.0.1:9/hook", secrets=("whsec_c2VjcmV0",))
    base = scenario().config()
    periods = tuple(p for p in base.periods if p.name in variant.periods)
    assert {p.name for p in periods} == set(variant.periods)
    events = {**base.events, **variant.meters}
    return msgspec.structs.replace(base, webhooks=(hook,), events=events, periods=periods)


class Stream:
    """The test's own account of which events are active."""

    def __init__(self, rng: random.Random, variant: Variant) -> None:
        self.rng = rng
        self.variant = variant
        self.active: dict[str, Event] = {}
        self.metadata: dict[str, dict[str, str]] = {}
        self.voided: set[str] = set()
        self.count = 0

    def new_event(self, now: int) -> Event:
        self.count += 1
        rng = self.rng
        # Mostly recent; some late by days, landing in closed periods.
        back = rng.choice((0, rng.randrange(0, 6 * HOUR), rng.randrange(0, 4 * 24 * HOUR)))
        ts = (now - back) // QUARTER * QUARTER + rng.choice((0, 1, QUARTER - 1))
        event = Event(
            id=f"e{self.count}",
            customer_id=rng.choice(CUSTOMERS),
            event_type=rng.choice(self.variant.event_types),
            value=float(rng.choice(VALUES)),
            ts_ms=min(ts, now),
        )
        self.metadata[event.id] = {"region": rng.choice(REGIONS), "user": rng.choice(USERS)}
        return event


async def run_round(store: Store, stream: Stream, now: int) -> None:
    rng = stream.rng
    batch = [stream.new_event(now) for _ in range(rng.randrange(3, 9))]
    stored = await store.ingest(
        [
            NewEvent(
                e.id,
                e.event_type,
                e.customer_id,
                e.value,
                json.dumps(stream.metadata[e.id]).encode(),
                e.ts_ms,
                now,
            )
            for e in batch
        ]
    )
    assert all(stored)
    stream.active.update((e.id, e) for e in batch)
    for _ in range(rng.randrange(0, 3)):
        victim = rng.choice(sorted(stream.active))
        body = json.dumps({"reason": "duplicate"}).encode()
        await corrections.void_event(store, event_id=victim, body=body, key=KEY, now_ms=now)
        stream.voided.add(stream.active.pop(victim).id)
    for _ in range(rng.randrange(0, 3)):
        target = stream.active[rng.choice(sorted(stream.active))]
        change: dict[str, Any] = rng.choice(
            (
                {"value": rng.choice(VALUES) + 100},
                {"timestamp": target.ts_ms - rng.randrange(1, 3 * 24 * HOUR)},
                {"customerId": "c_moved"},
                {"value": 1, "timestamp": min(now, target.ts_ms + rng.randrange(1, 2 * HOUR))},
                {"metadata": {"region": rng.choice(REGIONS), "user": rng.choice(USERS)}},
            )
        )
        if (
            change.get("customerId") == target.customer_id
            or (change.get("value") == target.value and change.get("timestamp") == target.ts_ms)
            or change.get("metadata") == stream.metadata[target.id]
        ):
            continue  # nothing would change
        amendment = await corrections.amend_event(
            store,
            event_id=target.id,
            body=json.dumps({"reason": "fix", **change}).encode(),
            key=KEY,
            idempotency_key=None,
            now_ms=now,
        )
        new = amendment.replacement
        stream.voided.add(stream.active.pop(target.id).id)
        stream.active[new.id] = Event(
            new.id, new.customer_id, new.event_type, float(new.value), new.ts_ms
        )
        assert new.metadata is not None
        stream.metadata[new.id] = json.loads(new.metadata)
    if stream.voided and rng.random() < 0.5:
        again = rng.choice(sorted(stream.voided))
        with pytest.raises(Conflict):
            await corrections.amend_event(
                store,
                event_id=again,
                body=b'{"reason": "again", "value": 12345}',
                key=KEY,
                idempotency_key=None,
                now_ms=now,
            )


def level_of(events: Sequence[tuple[int, int, float]], span: Span) -> tuple[Fraction | None, int]:
    """The naive time-weighted average over `span` of (ts, seq, value) levels sorted by
    (ts, seq): the last one before the span holds into it; None when there is nothing
    to report (no event inside and no level other than 0 held). Also the events inside."""
    first = bisect.bisect_left(events, (span.start_ms, -1, -math.inf))
    last = bisect.bisect_left(events, (span.end_ms, -1, -math.inf))
    level = Fraction(Decimal(repr(events[first - 1][2]))) if first else Fraction(0)
    if first == last and level == 0:
        return None, 0
    area, at = Fraction(0), span.start_ms
    for ts, _, value in events[first:last]:
        area += level * (ts - at)
        level, at = Fraction(Decimal(repr(value))), ts
    area += level * (span.end_ms - at)
    return area / (span.end_ms - span.start_ms), last - first


def number_problem(event_type: str, got: int | float | None, want: Fraction | None) -> str | None:
    if want is None or got is None:
        return None if got is None and want is None else f"{event_type} {got!r} != {want}"
    if want.denominator == 1:
        ok = type(got) is int and got == want.numerator
    else:
        ok = math.isclose(got, float(want), rel_tol=1e-12, abs_tol=1e-12)
    return None if ok else f"{event_type} {got!r} != {float(want)!r} ({want})"


def without(totals: Totals, event_types: Iterable[str]) -> Totals:
    left_out = set(event_types)
    return Totals(
        events={k: v for k, v in totals.events.items() if k not in left_out},
        event_counts={k: v for k, v in totals.event_counts.items() if k not in left_out},
        event_count=totals.event_count - sum(totals.event_counts.get(t, 0) for t in left_out),
    )


def exact(value: float) -> Fraction:
    return Fraction(Decimal(repr(value)))


class MeterReference:
    """The values of the meters that read raw events, naively, from the active events."""

    def __init__(
        self,
        meters: dict[str, EventTypeConfig],
        active: Sequence[Event],
        seq: dict[str, int],
        metadata: dict[str, dict[str, str]],
        calendar: ReferenceCalendar,
    ) -> None:
        self.meters = meters
        self.calendar = calendar
        # (event type, customer) -> group -> [(ts, seq, value)], and every event's metadata.
        self.series: dict[tuple[str, str], dict[str, list[tuple[int, int, float]]]] = {}
        self.metadata = {}
        for event in active:
            meter = meters.get(event.event_type)
            if meter is None:
                continue
            meta = metadata[event.id]
            group = meta["region"] if meter.group_by else ""
            row = (event.ts_ms, seq[event.id], event.value)
            self.metadata[row] = meta
            by_group = self.series.setdefault((event.event_type, event.customer_id), {})
            by_group.setdefault(group, []).append(row)
        for by_group in self.series.values():
            for rows in by_group.values():
                rows.sort()

    def value(self, event_type: str, customer_id: str, span: Span) -> tuple[Fraction | None, int]:
        """The meter's value over `span` (None: no value to report) and its events there."""
        meter = self.meters[event_type]
        by_group = self.series.get((event_type, customer_id), {})
        if meter.op == "time_weighted_avg":
            levels = [level_of(rows, span) for rows in by_group.values()]
            held = [value for value, _ in levels if value is not None]
            return (sum(held, Fraction(0)) if held else None), sum(n for _, n in levels)
        inside = [
            row
            for rows in by_group.values()
            for row in rows
            if span.start_ms <= row[0] < span.end_ms
        ]
        if not inside:
            return None, 0
        if meter.op == "percentile":
            ordered = sorted(exact(value) for _, _, value in inside)
            rank = max(math.ceil(Fraction(meter.percentile or 100) * len(ordered) / 100), 1)
            return ordered[rank - 1], len(inside)
        if meter.op == "unique_count":
            return Fraction(len({self.metadata[row]["user"] for row in inside})), len(inside)
        assert meter.op == "sum"
        return sum((exact(value) for _, _, value in inside), Fraction(0)), len(inside)

    def groups(
        self, event_type: str, customer_id: str, span: Span
    ) -> list[tuple[str, Fraction, int]]:
        """A grouped meter's (region, value, events) per group with something to show."""
        meter = self.meters[event_type]
        found = []
        for region, rows in sorted(self.series.get((event_type, customer_id), {}).items()):
            if meter.op == "time_weighted_avg":
                value, count = level_of(rows, span)
                if value is not None and (count or value != 0):
                    found.append((region, value, count))
                continue
            inside = [v for ts, _, v in rows if span.start_ms <= ts < span.end_ms]
            if inside:
                found.append((region, sum(map(exact, inside), Fraction(0)), len(inside)))
        return found

    def closed_records(self, period: str, mark: int) -> set[str]:
        """Records the meters make in periods that ended by `mark`."""
        found = set()
        for customer_id in {customer for _, customer in self.series}:
            first = min(
                rows[0][0]
                for (_, customer), by_group in self.series.items()
                if customer == customer_id
                for rows in by_group.values()
            )
            span = self.calendar.span(period, first)
            while span.end_ms <= mark:
                if any(self.value(t, customer_id, span)[0] is not None for t in self.meters):
                    found.add(record_id((customer_id, period, span)))
                span = self.calendar.span(period, span.end_ms)
        return found


async def check(
    store: Store, stream: Stream, calendar: ReferenceCalendar, variant: Variant
) -> list[str]:
    listed = await store.list_events(EventQuery(limit=100_000, include_voided=True))
    seq = {event.id: event.seq for event in listed}
    assert {e.id for e in listed if e.voided_ms is None} == set(stream.active)
    arrivals = [Arrival(seq[e.id], 0, e) for e in stream.active.values()]
    grouped = {g: m for g, m in groups(arrivals, calendar).items() if g[1] in variant.periods}
    expected = {record_id(group): members for group, members in grouped.items()}
    spans = {record_id(group): (group[0], group[1], group[2]) for group in grouped}
    meters = MeterReference(
        variant.meters, list(stream.active.values()), seq, stream.metadata, calendar
    )
    rows = await store.list_aggregations(AggregationQuery(limit=100_000))
    deliveries = await store.list_deliveries(status=None, limit=100_000, before_id=None)
    sent: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for delivery in sorted(deliveries, key=lambda d: d.id):
        sent[delivery.aggregation_id].append(json.loads(delivery.payload))
    problems = []
    marks = {period: await store.watermark(period) for period in variant.periods}
    records = {row.id: row for row in rows}
    for rid, (_, period, span) in spans.items():
        mark = marks[period]
        if mark is not None and span.end_ms <= mark and rid not in records:
            problems.append(f"{rid}: closed period without a record")
    for period, mark in marks.items():
        if mark is not None:
            for rid in sorted(meters.closed_records(period, mark) - records.keys()):
                problems.append(f"{rid}: closed period with a meter value, without a record")
    for row in rows:
        if row.status != "closed":
            continue
        members = expected.get(row.id, [])
        plain = without(row.totals, variant.meters)
        if members:
            problems += [f"{row.id}: {p}" for p in expected_totals_problems(plain, members)]
        elif plain.event_count or plain.events:
            problems.append(f"{row.id}: nothing active, but the record says {row.totals}")
        span = Span(row.period_key, row.period_start, row.period_end)
        for event_type in variant.meters:
            want, count = meters.value(event_type, row.customer_id, span)
            problem = number_problem(event_type, row.totals.events.get(event_type), want)
            if problem or row.totals.event_counts.get(event_type, 0) != count:
                problems.append(f"{row.id}: {problem or f'{event_type} count'} in {row.totals}")
            if not variant.meters[event_type].group_by:
                continue
            shown = [
                (g.dimensions["region"], g.value, g.count)
                for g in row.totals.groups.get(event_type, [])
            ]
            wanted = meters.groups(event_type, row.customer_id, span)
            if [(r, n) for r, _, n in shown] != [(r, n) for r, _, n in wanted] or any(
                number_problem(event_type, got, want)
                for (_, got, _), (_, want, _) in zip(shown, wanted, strict=True)
            ):
                problems.append(f"{row.id}: {event_type} groups {shown} != {wanted}")
        messages = sent.get(row.id, [])
        types = [m["type"] for m in messages]
        want_types = ["aggregation.completed"] + ["aggregation.adjusted"] * (row.revision - 1)
        if types != want_types:
            problems.append(f"{row.id}: revision {row.revision}, messages {types}")
            continue
        revisions = [m["data"]["revision"] for m in messages[1:]]
        if revisions != list(range(2, row.revision + 1)):
            problems.append(f"{row.id}: adjusted revisions {revisions}")
        last = messages[-1]["data"]
        if (last["events"], last["eventCount"]) != (row.totals.events, row.totals.event_count):
            problems.append(f"{row.id}: last message {last} != record {row.totals}")
        for before, after in zip(messages, messages[1:], strict=False):
            keys = ("events", "eventCounts", "eventCount", "groups")
            previous = {k: before["data"][k] for k in keys if k in before["data"]}
            if after["data"]["previous"] != previous:
                problems.append(f"{row.id}: previous {after['data']['previous']} != {previous}")
    return problems


async def run_stream(store: Store, seed: int, variant: Variant) -> list[Any]:
    """Rounds of events and corrections, each settled and checked; the final records."""
    rng = random.Random(seed)
    stream = Stream(rng, variant)
    calendar = ReferenceCalendar(scenario())
    closer = PeriodCloser(store, config(variant))
    for index in range(ROUNDS):
        now = START + index * ROUND_MS + rng.randrange(0, HOUR)
        await run_round(store, stream, now)
        if rng.random() < 0.5:
            await closer.trigger(now)
        else:
            await closer.close_completed(now)
        problems = await check(store, stream, calendar, variant)
        assert not problems, "\n".join([f"seed {seed}, round {index}:", *problems[:20]])
    await closer.trigger(variant.final_ms)
    problems = await check(store, stream, calendar, variant)
    rows = await store.list_aggregations(AggregationQuery(limit=100_000))
    problems += [
        f"{row.id}: still {row.status}"
        for row in rows
        if row.status != "closed" and row.period_end <= variant.final_ms
    ]
    assert not problems, "\n".join([f"seed {seed}, final:", *problems[:20]])
    return rows


@pytest.mark.parametrize("seed", [1, 2])
async def test_latest_revisions_match_a_naive_reference(store: Store, seed: int) -> None:
    await store.open()
    try:
        rows = await run_stream(store, seed, FOLDABLE)
        # The stream did what it is for: corrections and late events revised records.
        revised = [row for row in rows if row.revision >= 2]
        assert len(revised) >= 5 and max(row.revision for row in rows) >= 3, len(revised)
    finally:
        await store.close()


@pytest.mark.parametrize("seed", [3, 4])
async def test_meters_and_carried_levels_match_a_naive_reference(store: Store, seed: int) -> None:
    await store.open()
    try:
        rows = await run_stream(store, seed, METERED)
        # Corrections reached periods after their own: revisions of records whose
        # period holds no event of the level at all.
        carried = [
            row
            for row in rows
            if row.revision >= 2
            and "t_level" in row.totals.events
            and not row.totals.event_counts.get("t_level")
        ]
        assert len(carried) >= 5, len(carried)
        assert sum(row.period == CUSTOM for row in carried) >= 1
        for event_type in METERS:
            assert any(row.revision >= 2 and event_type in row.totals.events for row in rows)
    finally:
        await store.close()
