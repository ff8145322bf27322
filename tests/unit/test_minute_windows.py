"""Minute query windows: local minutes in any zone, cut to the range, at most 10,000."""

from __future__ import annotations

import pytest

from meterd.errors import InvalidRequest
from meterd.meters.groups import GroupFilter
from meterd.meters.windows import MAX_WINDOWS, windows
from meterd.storage.sqlite.meters import regular_step

T = 1_736_935_200_000  # 2025-01-15T10:00:00Z


def test_minutes_are_cut_to_the_range() -> None:
    found = windows(from_ms=T + 500, to_ms=T + 150_000, size="minute", timezone="Europe/Oslo")
    assert found == [(T + 500, T + 60_000), (T + 60_000, T + 120_000), (T + 120_000, T + 150_000)]


def test_a_zone_offset_with_seconds_moves_the_minutes() -> None:
    # Amsterdam kept +00:19:32 until 1937: its local minutes start 28 s past UTC's.
    start = -1_500_000_000_000
    found = windows(
        from_ms=start, to_ms=start + 130_000, size="minute", timezone="Europe/Amsterdam"
    )
    assert [lo % 60_000 for lo, _ in found[1:]] == [28_000, 28_000]
    assert found[0][0] == start and found[-1][1] == start + 130_000


def test_more_than_ten_thousand_minutes_are_refused() -> None:
    assert (
        len(windows(from_ms=T, to_ms=T + MAX_WINDOWS * 60_000, size="minute", timezone="UTC"))
        == MAX_WINDOWS
    )
    with pytest.raises(InvalidRequest) as raised:
        windows(from_ms=T, to_ms=T + MAX_WINDOWS * 60_000 + 1, size="minute", timezone="UTC")
    assert raised.value.details["field"] == "windowSize"


def test_regular_windows_are_found_by_arithmetic() -> None:
    minutes = windows(from_ms=T + 500, to_ms=T + 180_500, size="minute", timezone="UTC")
    assert regular_step(minutes) == (T, 60_000)
    months = windows(from_ms=T, to_ms=T + 200 * 86_400_000, size="month", timezone="UTC")
    assert regular_step(months) is None


def test_a_negated_filter_keeps_the_null_group() -> None:
    ne = GroupFilter(frozenset({"a"}), negated=True)
    assert ne.matches(None) and ne.matches("b") and not ne.matches("a")
    assert not GroupFilter(frozenset({"a"})).matches(None)
    assert GroupFilter(frozenset(), negated=True).keeps_all
