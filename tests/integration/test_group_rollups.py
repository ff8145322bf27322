"""Group rollups (DESIGN §6) on both backends: built, changed, voided, rebuilt, dropped.

Each step compares `group_totals` (group rollups once built, raw events before) with
the totals computed here from the events that are still active.
"""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

from meterd.config.model import EventTypeConfig
from meterd.ingest import NewEvent
from meterd.meters.groups import GroupFilter, GroupTotal
from meterd.storage.base import KeyIdentity, Store

pytestmark = pytest.mark.ingest_process

DAY = 86_400_000
START = 1_741_564_800_000  # 2025-03-10 00:00 UTC
WINDOWS = [(START, START + DAY), (START + DAY, START + 2 * DAY)]
KEY = KeyIdentity("test", "t")


def events() -> list[NewEvent]:
    made = []
    for index in range(60):
        meta = {"model": f"m{index % 3}", "dir": ["in", "out"][index % 2]}
        if index % 7 == 0:
            del meta["dir"]
        ts = START + (index * 2_345_678) % (2 * DAY)
        customer = f"c{index % 2}"
        made.append(
            NewEvent(
                f"e{index}", "tokens", customer, index + 0.1, json.dumps(meta).encode(), ts, ts
            )
        )
    return made


def expected(
    stored: list[NewEvent], dims: tuple[str, ...], voided: set[str]
) -> dict[tuple[int, str | None, tuple[str | None, ...]], tuple[int, float, float]]:
    folded: dict[tuple[int, str | None, tuple[str | None, ...]], list[float]] = defaultdict(list)
    for event in stored:
        if event.id in voided:
            continue
        meta = json.loads(event.metadata or b"{}")
        place = 0 if event.ts_ms < START + DAY else 1
        folded[(place, event.customer_id, tuple(meta.get(d) for d in dims))].append(event.value)
    return {key: (len(v), min(v), max(v)) for key, v in folded.items()}


async def totals(store: Store, dims: tuple[str, ...]) -> dict[object, tuple[int, float, float]]:
    rows = await store.group_totals(
        event_type="tokens",
        windows=WINDOWS,
        group_by=dims,
        by_customer=True,
    )
    assert rows is not None
    return {(r.place, r.customer_id, r.group): _numbers(r) for r in rows}


def _numbers(row: GroupTotal) -> tuple[int, float, float]:
    return row.events, row.minimum, row.maximum


async def sums(store: Store, dims: tuple[str, ...]) -> dict[object, float]:
    rows = await store.group_totals(
        event_type="tokens", windows=WINDOWS, group_by=dims, by_customer=False
    )
    assert rows is not None
    return {(r.place, r.group): float(r.total) for r in rows}


async def test_group_rollups_follow_groupby_changes_voids_and_rebuilds(open_store: Store) -> None:
    store = open_store
    await store.prepare_meters(["tokens"])  # the covering index the raw-event fold uses
    stored = events()
    await store.ingest(stored[:30])
    # Built from the first 30 events; the other 30 are folded at ingest.
    assert (
        await store.prepare_group_rollups(
            {"tokens": EventTypeConfig("sum", group_by=("model", "dir"))}
        )
        >= 30
    )
    await store.ingest(stored[30:])
    voided: set[str] = set()
    assert await totals(store, ("model", "dir")) == expected(stored, ("model", "dir"), voided)
    assert await totals(store, ("dir",)) == expected(stored, ("dir",), voided)
    # Exact sums of 0.1s: the day's total over all groups, as a decimal.
    by_model = await sums(store, ("model",))
    assert round(sum(by_model.values()), 6) == round(sum(e.value for e in stored), 6)

    # Filters on stored groups: a plain one drops the null group, a negated one keeps it.
    for found in (GroupFilter(frozenset({"in"})), GroupFilter(frozenset({"in"}), negated=True)):
        rows = await store.group_totals(
            event_type="tokens",
            windows=WINDOWS,
            group_by=("model",),
            by_customer=True,
            filters={"dir": found},
        )
        assert rows is not None
        kept = [e for e in stored if found.matches(json.loads(e.metadata or b"{}").get("dir"))]
        assert {(r.place, r.customer_id, r.group): _numbers(r) for r in rows} == expected(
            kept, ("model",), voided
        )

    for event_id in ("e3", "e31", "e59"):
        await store.void_event(event_id=event_id, reason="wrong", key=KEY, now_ms=START)
        voided.add(event_id)
    assert await totals(store, ("model", "dir")) == expected(stored, ("model", "dir"), voided)

    # groupBy changes: the rows are built again for the new keys, reads stay exact.
    assert (
        await store.prepare_group_rollups(
            {"tokens": EventTypeConfig("sum", group_by=("dir", "model"))}
        )
        >= 1
    )
    assert await totals(store, ("model",)) == expected(stored, ("model",), voided)
    assert (
        await store.prepare_group_rollups(
            {"tokens": EventTypeConfig("sum", group_by=("dir", "model"))}
        )
        == 0
    )  # unchanged

    # `meterd rebuild`: until built again, reads fold raw events; after, the rows.
    await store.rebuild_rollups()
    assert await totals(store, ("model", "dir")) == expected(stored, ("model", "dir"), voided)
    assert (
        await store.prepare_group_rollups(
            {"tokens": EventTypeConfig("sum", group_by=("dir", "model"))}
        )
        >= 1
    )
    assert await totals(store, ("model", "dir")) == expected(stored, ("model", "dir"), voided)

    # No longer grouped: the rows go, reads fold raw events.
    assert await store.prepare_group_rollups({}) == 0
    assert await totals(store, ("model",)) == expected(stored, ("model",), voided)
