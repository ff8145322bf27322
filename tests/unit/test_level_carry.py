"""Where a change to a time-weighted level stops mattering (meterd.revisions.LevelEnd)
and which records it touches (touched_records with carries)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from meterd.config.model import EventTypeConfig, PeriodConfig
from meterd.periods import BUCKET_MS, PeriodCalendar
from meterd.revisions import LEVEL_PAGE, LevelCarry, LevelEnd, Touched, touched_records

GROUPED = EventTypeConfig("time_weighted_avg", group_by=("region",))
PLAIN = EventTypeConfig("time_weighted_avg")
HOUR = 3_600_000


def meta(region: str) -> str:
    return json.dumps({"region": region})


def read(search: LevelEnd, later: Sequence[tuple[int, int, str | None]]) -> int:
    """Feeds `later` page by page as a store would; the pages read."""
    pages = 0
    while (params := search.next_page()) is not None:
        after = (int(params["ts"]), int(params["seq"]))
        page = [row for row in later if (row[0], row[1]) > after][:LEVEL_PAGE]
        search.see(page)
        pages += 1
    return pages


def test_a_bucket_without_events_of_the_meter_carries_nothing() -> None:
    search = LevelEnd(PLAIN, "c", 10, [])
    assert search.next_page() is None and search.carry(("daily",)) is None


def test_an_ungrouped_level_ends_at_the_next_event() -> None:
    search = LevelEnd(PLAIN, "c", 10, [None, None])
    assert read(search, [(11 * BUCKET_MS + 5, 7, None), (12 * BUCKET_MS, 8, None)]) == 1
    assert search.carry(("daily",)) == LevelCarry(
        "c", ("daily",), 11 * BUCKET_MS, 11 * BUCKET_MS + 5
    )


def test_each_group_ends_at_its_own_next_event_across_pages() -> None:
    search = LevelEnd(GROUPED, "c", 0, [meta("eu"), meta("us")])
    # A full page of us events, then eu's next event on the second page.
    later = [(BUCKET_MS + n, n, meta("us")) for n in range(LEVEL_PAGE)]
    later.append((5 * BUCKET_MS, LEVEL_PAGE, meta("eu")))
    assert read(search, later) == 2
    assert search.carry(("hourly",)) == LevelCarry("c", ("hourly",), BUCKET_MS, 5 * BUCKET_MS)


def test_a_group_without_a_later_event_carries_on() -> None:
    search = LevelEnd(GROUPED, "c", 0, [meta("eu"), meta("us")])
    read(search, [(BUCKET_MS, 1, meta("us"))])
    assert search.carry(("hourly",)) == LevelCarry("c", ("hourly",), BUCKET_MS, None)


def test_carries_touch_closed_periods_up_to_the_next_event_or_the_watermark() -> None:
    hourly = PeriodCalendar(PeriodConfig("hourly"), "UTC")
    calendars = {"hourly": hourly}
    change = [("hourly", "c", 0)]  # the bucket at 00:00
    ends_at_two = LevelCarry("c", ("hourly",), BUCKET_MS, 2 * HOUR + 1)
    found = touched_records(change, calendars, [ends_at_two], {"hourly": 10 * HOUR})
    assert [t.bounds.start_ms for t in found] == [0, HOUR, 2 * HOUR]
    open_ended = LevelCarry("c", ("hourly",), BUCKET_MS, None)
    found = touched_records(change, calendars, [open_ended], {"hourly": 4 * HOUR})
    assert [t.bounds.start_ms for t in found] == [0, HOUR, 2 * HOUR, 3 * HOUR]
    # Nothing closed: only the change's own record.
    assert touched_records(change, calendars, [open_ended], {}) == [
        Touched("hourly", "c", hourly.bounds_at(0))
    ]
