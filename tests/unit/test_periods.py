from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterd.config.model import PeriodConfig
from meterd.periods import BUCKET_MS, PeriodBounds, PeriodCalendar, period_keys
from meterd.timeutil import format_ms, parse_iso_ms

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


def at(text: str) -> int:
    return parse_iso_ms(text)


def calendar(name: str, timezone: str = "UTC") -> PeriodCalendar:
    return PeriodCalendar(PeriodConfig(name=name), timezone)


def custom(every_ms: int, anchor: str, timezone: str = "UTC") -> PeriodCalendar:
    return PeriodCalendar(PeriodConfig("custom", every_ms, at(anchor)), timezone)


def span(bounds: PeriodBounds) -> tuple[str, str, str]:
    return bounds.key, format_ms(bounds.start_ms), format_ms(bounds.end_ms)


# --- UTC calendar periods -------------------------------------------------------------


def test_last_millisecond_of_a_month_belongs_to_it() -> None:
    monthly = calendar("monthly")
    january = monthly.bounds_at(at("2025-01-31T23:59:59.999Z"))
    assert span(january) == ("202501", "2025-01-01T00:00:00.000Z", "2025-02-01T00:00:00.000Z")
    assert format_ms(january.last_ms) == "2025-01-31T23:59:59.999Z"
    assert monthly.bounds_at(january.last_ms + 1).key == "202502"


def test_leap_day() -> None:
    assert span(calendar("daily").bounds_at(at("2024-02-29T12:00:00Z"))) == (
        "20240229",
        "2024-02-29T00:00:00.000Z",
        "2024-03-01T00:00:00.000Z",
    )
    february = calendar("monthly").bounds_for_key("202402")
    assert february.end_ms - february.start_ms == 29 * DAY_MS
    with pytest.raises(ValueError):
        calendar("daily").bounds_for_key("20230229")


@pytest.mark.parametrize(
    ("moment", "key"),
    [
        ("2020-12-31T12:00:00Z", "202053"),
        ("2021-01-03T23:59:59.999Z", "202053"),
        ("2021-01-04T00:00:00Z", "202101"),
        ("2019-12-30T00:00:00Z", "202001"),
        ("2019-12-29T23:59:59.999Z", "201952"),
    ],
)
def test_iso_weeks(moment: str, key: str) -> None:
    assert calendar("weekly").bounds_at(at(moment)).key == key


def test_iso_week_53_runs_monday_to_monday() -> None:
    week = calendar("weekly").bounds_for_key("202053")
    assert span(week) == ("202053", "2020-12-28T00:00:00.000Z", "2021-01-04T00:00:00.000Z")
    with pytest.raises(ValueError):
        calendar("weekly").bounds_for_key("202153")


def test_year_end() -> None:
    last = at("2024-12-31T23:59:59.999Z")
    assert period_keys(last, "UTC") == {
        "hour": "2024123123",
        "day": "20241231",
        "week": "202501",
        "month": "202412",
        "year": "2024",
    }
    year = calendar("yearly").bounds_at(last)
    assert span(year) == ("2024", "2024-01-01T00:00:00.000Z", "2025-01-01T00:00:00.000Z")
    assert calendar("yearly").bounds_at(last + 1).key == "2025"


def test_hourly_runs_from_the_hour_to_its_last_millisecond() -> None:
    hour = calendar("hourly").bounds_at(at("2025-01-15T10:00:00Z"))
    assert span(hour) == ("2025011510", "2025-01-15T10:00:00.000Z", "2025-01-15T11:00:00.000Z")
    assert format_ms(hour.last_ms) == "2025-01-15T10:59:59.999Z"


def test_period_keys_use_the_local_date() -> None:
    moment = at("2020-12-31T12:00:00Z")
    assert period_keys(moment, "Pacific/Kiritimati") == {
        "hour": "2021010102",
        "day": "20210101",
        "week": "202053",
        "month": "202101",
        "year": "2021",
    }


# --- daylight saving time and odd offsets --------------------------------------------


def test_oslo_days_across_dst_are_23_and_25_hours() -> None:
    daily = calendar("daily", "Europe/Oslo")
    spring = daily.bounds_at(at("2025-03-30T12:00:00Z"))
    assert span(spring) == ("20250330", "2025-03-29T23:00:00.000Z", "2025-03-30T22:00:00.000Z")
    autumn = daily.bounds_at(at("2025-10-26T12:00:00Z"))
    assert span(autumn) == ("20251026", "2025-10-25T22:00:00.000Z", "2025-10-26T23:00:00.000Z")
    assert autumn.end_ms - autumn.start_ms == 25 * HOUR_MS


def test_oslo_repeated_hour_has_two_keys() -> None:
    hourly = calendar("hourly", "Europe/Oslo")
    first = hourly.bounds_at(at("2025-10-26T00:30:00Z"))
    repeated = hourly.next_bounds(first)
    assert span(first) == ("2025102602", "2025-10-26T00:00:00.000Z", "2025-10-26T01:00:00.000Z")
    assert span(repeated) == (
        "2025102602b",
        "2025-10-26T01:00:00.000Z",
        "2025-10-26T02:00:00.000Z",
    )
    assert hourly.next_bounds(repeated).key == "2025102603"
    assert hourly.bounds_for_key("2025102602b") == repeated
    assert hourly.previous_bounds(repeated) == first
    with pytest.raises(ValueError):
        hourly.bounds_for_key("2025102603b")


def test_oslo_skipped_hour_has_no_period() -> None:
    hourly = calendar("hourly", "Europe/Oslo")
    one = hourly.bounds_at(at("2025-03-30T00:59:59.999Z"))
    assert one.key == "2025033001"
    assert hourly.next_bounds(one).key == "2025033003"
    with pytest.raises(ValueError):
        hourly.bounds_for_key("2025033002")


def test_kathmandu_bounds_sit_on_quarter_hours() -> None:
    day = calendar("daily", "Asia/Kathmandu").bounds_at(at("2025-01-15T12:00:00Z"))
    assert span(day) == ("20250115", "2025-01-14T18:15:00.000Z", "2025-01-15T18:15:00.000Z")
    hour = calendar("hourly", "Asia/Kathmandu").bounds_at(at("2025-01-15T12:00:00Z"))
    assert span(hour) == ("2025011517", "2025-01-15T11:15:00.000Z", "2025-01-15T12:15:00.000Z")
    assert day.start_ms % BUCKET_MS == 0 and hour.start_ms % BUCKET_MS == 0


def test_santiago_day_starting_in_a_midnight_gap() -> None:
    # 2024-09-08 00:00 -04 jumps to 01:00 -03: the day opens at the jump.
    day = calendar("daily", "America/Santiago").bounds_for_key("20240908")
    assert span(day) == ("20240908", "2024-09-08T04:00:00.000Z", "2024-09-09T03:00:00.000Z")
    hourly = calendar("hourly", "America/Santiago")
    assert hourly.bounds_at(day.start_ms).key == "2024090801"
    assert hourly.bounds_at(day.start_ms - 1).key == "2024090723"
    with pytest.raises(ValueError):
        hourly.bounds_for_key("2024090800")


def test_santiago_fall_back_before_midnight() -> None:
    # 2025-04-06 00:00 -03 falls back to 2025-04-05 23:00 -04.
    day = calendar("daily", "America/Santiago").bounds_at(at("2025-04-05T12:00:00Z"))
    assert span(day) == ("20250405", "2025-04-05T03:00:00.000Z", "2025-04-06T04:00:00.000Z")
    hourly = calendar("hourly", "America/Santiago")
    assert hourly.bounds_at(at("2025-04-06T02:30:00Z")).key == "2025040523"
    assert hourly.bounds_at(at("2025-04-06T03:30:00Z")).key == "2025040523b"


def test_havana_month_and_week_with_a_midnight_gap() -> None:
    # Cuba springs forward at 00:00 -> 01:00 on 2025-03-09, a Sunday.
    day = calendar("daily", "America/Havana").bounds_for_key("20250309")
    assert span(day) == ("20250309", "2025-03-09T05:00:00.000Z", "2025-03-10T04:00:00.000Z")
    week = calendar("weekly", "America/Havana").bounds_at(day.start_ms)
    assert span(week) == ("202510", "2025-03-03T05:00:00.000Z", "2025-03-10T04:00:00.000Z")


def test_lord_howe_half_hour_dst() -> None:
    hourly = calendar("hourly", "Australia/Lord_Howe")
    # 2025-04-06 02:00 +11 falls back to 01:30 +10:30: half an hour repeats.
    first = hourly.bounds_for_key("2025040601")
    repeated = hourly.bounds_for_key("2025040601b")
    assert span(first) == ("2025040601", "2025-04-05T14:00:00.000Z", "2025-04-05T15:00:00.000Z")
    assert span(repeated) == (
        "2025040601b",
        "2025-04-05T15:00:00.000Z",
        "2025-04-05T15:30:00.000Z",
    )
    # 2025-10-05 02:00 +10:30 springs forward to 02:30 +11: hour 02 is half long.
    short = hourly.bounds_for_key("2025100502")
    assert span(short) == ("2025100502", "2025-10-04T15:30:00.000Z", "2025-10-04T16:00:00.000Z")


def test_chatham_repeats_a_stretch_that_is_not_a_whole_hour() -> None:
    # 2025-04-06 03:45 +13:45 falls back to 02:45 +12:45.
    hourly = calendar("hourly", "Pacific/Chatham")
    hours = list(hourly.bounds_between(at("2025-04-05T12:15:00Z"), at("2025-04-05T16:15:00Z")))
    assert [span(hour) for hour in hours] == [
        ("2025040602", "2025-04-05T12:15:00.000Z", "2025-04-05T13:15:00.000Z"),
        ("2025040603", "2025-04-05T13:15:00.000Z", "2025-04-05T14:00:00.000Z"),
        ("2025040602b", "2025-04-05T14:00:00.000Z", "2025-04-05T14:15:00.000Z"),
        ("2025040603b", "2025-04-05T14:15:00.000Z", "2025-04-05T15:15:00.000Z"),
        ("2025040604", "2025-04-05T15:15:00.000Z", "2025-04-05T16:15:00.000Z"),
    ]
    assert all(hourly.bounds_for_key(hour.key) == hour for hour in hours)


def test_apia_skipped_day_has_no_period() -> None:
    daily = calendar("daily", "Pacific/Apia")
    before = daily.bounds_for_key("20111229")
    assert daily.next_bounds(before).key == "20111231"
    with pytest.raises(ValueError):
        daily.bounds_for_key("20111230")


BUCKET_SWEEPS = [
    ("Europe/Oslo", "2025-03-29T00:00:00Z"),
    ("Europe/Oslo", "2025-10-25T00:00:00Z"),
    ("America/Santiago", "2024-09-06T00:00:00Z"),
    ("America/Santiago", "2025-04-04T00:00:00Z"),
    ("America/Havana", "2025-03-08T00:00:00Z"),
    ("America/Havana", "2025-11-01T00:00:00Z"),
    ("Australia/Lord_Howe", "2025-04-04T00:00:00Z"),
    ("Australia/Lord_Howe", "2025-10-03T00:00:00Z"),
    ("Asia/Kathmandu", "2025-01-01T00:00:00Z"),
]


@pytest.mark.parametrize(("timezone", "since"), BUCKET_SWEEPS)
def test_every_bucket_gets_its_local_hour_and_date(timezone: str, since: str) -> None:
    """Against an independent reading: each 15-minute bucket's own local time."""
    zone = ZoneInfo(timezone)
    hourly, daily = calendar("hourly", timezone), calendar("daily", timezone)
    first_bucket_of: dict[tuple[str, str], int] = {}
    for bucket in range(at(since), at(since) + 4 * DAY_MS, BUCKET_MS):
        local = datetime.fromtimestamp(bucket // 1000, zone)
        hour_key = local.strftime("%Y%m%d%H") + ("b" if local.fold else "")
        day_key = local.strftime("%Y%m%d")
        hour, day = hourly.bounds_at(bucket), daily.bounds_at(bucket)
        assert (hour.key, day.key) == (hour_key, day_key), format_ms(bucket)
        for kind, bounds in (("hour", hour), ("day", day)):
            first_bucket_of.setdefault((kind, bounds.key), bucket)
            if first_bucket_of[(kind, bounds.key)] > at(since):
                assert bounds.start_ms == first_bucket_of[(kind, bounds.key)]


# --- custom periods --------------------------------------------------------------------


def test_custom_30_day_periods_around_the_anchor() -> None:
    thirty = custom(30 * DAY_MS, "2025-01-15T00:00:00Z")
    assert span(thirty.bounds_at(at("2025-01-15T00:00:00Z"))) == (
        "202501150000",
        "2025-01-15T00:00:00.000Z",
        "2025-02-14T00:00:00.000Z",
    )
    assert span(thirty.bounds_at(at("2025-01-14T23:59:59.999Z"))) == (
        "202412160000",
        "2024-12-16T00:00:00.000Z",
        "2025-01-15T00:00:00.000Z",
    )
    assert span(thirty.bounds_at(at("2025-03-01T00:00:00Z"))) == (
        "202502140000",
        "2025-02-14T00:00:00.000Z",
        "2025-03-16T00:00:00.000Z",
    )
    assert thirty.bounds_at(at("2024-10-01T00:00:00Z")).start_ms == at("2024-09-17T00:00:00Z")


def test_custom_periods_ignore_the_timezone_except_in_keys() -> None:
    anchor = "2025-01-15T00:00:00Z"
    utc = custom(30 * DAY_MS, anchor).bounds_at(at("2025-06-01T00:00:00Z"))
    oslo = custom(30 * DAY_MS, anchor, "Europe/Oslo").bounds_at(at("2025-06-01T00:00:00Z"))
    assert (utc.start_ms, utc.end_ms) == (oslo.start_ms, oslo.end_ms)
    assert (utc.key, oslo.key) == ("202505150000", "202505150200")


def test_custom_keys_in_a_repeated_hour() -> None:
    quarter = custom(BUCKET_MS, "2025-01-01T00:00:00Z", "Europe/Oslo")
    first = quarter.bounds_at(at("2025-10-26T00:15:00Z"))
    repeated = quarter.bounds_at(at("2025-10-26T01:15:00Z"))
    assert (first.key, repeated.key) == ("202510260215", "202510260215b")
    assert quarter.bounds_for_key("202510260215b") == repeated


def test_custom_key_must_be_a_period_start() -> None:
    thirty = custom(30 * DAY_MS, "2025-01-15T00:00:00Z")
    with pytest.raises(ValueError):
        thirty.bounds_for_key("202501160000")
    with pytest.raises(ValueError):
        thirty.bounds_for_key("202501150000b")


def test_custom_periods_work_under_local_mean_time() -> None:
    # Monrovia was -00:44:30 until 1972: local keys lose the seconds but still invert.
    quarter = custom(BUCKET_MS, "1960-01-01T00:00:00Z", "Africa/Monrovia")
    bounds = quarter.bounds_at(at("1960-10-26T01:20:00Z"))
    assert span(bounds) == ("196010260030", "1960-10-26T01:15:00.000Z", "1960-10-26T01:30:00.000Z")
    assert quarter.bounds_for_key(bounds.key) == bounds


# --- misalignment and bad input --------------------------------------------------------


@pytest.mark.parametrize("name", ["hourly", "daily", "monthly"])
def test_local_mean_time_bounds_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="15-minute"):
        calendar(name, "Africa/Monrovia").bounds_at(at("1971-06-01T12:00:00Z"))


def test_clock_change_at_one_past_the_hour_is_refused_only_where_it_matters() -> None:
    # St. John's switched at 00:01 local until 2011: its hours are off the buckets there,
    # its days are not.
    moment = at("2000-04-02T03:35:00Z")
    with pytest.raises(ValueError, match="15-minute"):
        calendar("hourly", "America/St_Johns").bounds_at(moment)
    day = calendar("daily", "America/St_Johns").bounds_at(moment)
    assert span(day) == ("20000402", "2000-04-02T03:30:00.000Z", "2000-04-03T02:30:00.000Z")


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("hourly", ""),
        ("hourly", "20250115"),
        ("hourly", "2025011524"),
        ("hourly", "2025011510c"),
        ("hourly", "2025011510B"),
        ("daily", "2025011"),
        ("daily", "20250132"),
        ("daily", "2025-01-1"),
        ("daily", "２０２５０１１５"),
        ("weekly", "202500"),
        ("weekly", "2025011"),
        ("monthly", "202513"),
        ("monthly", "202500"),
        ("monthly", " 202501"),
        ("yearly", "25"),
        ("yearly", "0000"),
    ],
)
def test_malformed_keys_are_refused(name: str, key: str) -> None:
    with pytest.raises(ValueError):
        calendar(name).bounds_for_key(key)


def test_malformed_custom_keys_are_refused() -> None:
    thirty = custom(30 * DAY_MS, "2025-01-15T00:00:00Z")
    for key in ("2025011500", "20250115000", "202501150060", "20250115000b0"):
        with pytest.raises(ValueError):
            thirty.bounds_for_key(key)


@pytest.mark.parametrize(
    ("period", "timezone"),
    [
        (PeriodConfig("fortnightly"), "UTC"),
        (PeriodConfig("7m", 7 * 60_000, 0), "UTC"),
        (PeriodConfig("0m", 0, 0), "UTC"),
        (PeriodConfig("30d", 30 * DAY_MS, 60_000), "UTC"),
        (PeriodConfig("daily"), "Mars/Olympus_Mons"),
        (PeriodConfig("daily"), ""),
        (PeriodConfig("daily"), "America"),
    ],
)
def test_bad_configuration_is_refused(period: PeriodConfig, timezone: str) -> None:
    with pytest.raises(ValueError):
        PeriodCalendar(period, timezone)


# --- iteration -------------------------------------------------------------------------


def test_bounds_between_covers_overlapping_periods_in_order() -> None:
    monthly = calendar("monthly")
    keys = [
        b.key
        for b in monthly.bounds_between(at("2025-01-15T00:00:00Z"), at("2025-03-01T00:00:00Z"))
    ]
    assert keys == ["202501", "202502"]
    keys = [
        b.key
        for b in monthly.bounds_between(at("2025-01-15T00:00:00Z"), at("2025-03-01T00:00:00.001Z"))
    ]
    assert keys == ["202501", "202502", "202503"]
    assert (
        list(monthly.bounds_between(at("2025-03-01T00:00:00Z"), at("2025-03-01T00:00:00Z"))) == []
    )


def test_a_year_of_oslo_hours_is_contiguous_and_invertible() -> None:
    hourly = calendar("hourly", "Europe/Oslo")
    hours = list(hourly.bounds_between(at("2024-12-31T23:00:00Z"), at("2025-12-31T23:00:00Z")))
    assert len(hours) == 8760
    assert len({hour.key for hour in hours}) == 8760
    assert all(a.end_ms == b.start_ms for a, b in zip(hours, hours[1:], strict=False))
    assert [hour.key for hour in hours if hour.key.endswith("b")] == ["2025102602b"]
    assert all(hourly.bounds_for_key(hour.key) == hour for hour in hours)


# --- properties ------------------------------------------------------------------------

TIMEZONES = [
    "UTC",
    "Europe/Oslo",
    "America/New_York",
    "America/Santiago",
    "America/Havana",
    "Asia/Kathmandu",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "Pacific/Apia",
]
PERIODS = [
    PeriodConfig("hourly"),
    PeriodConfig("daily"),
    PeriodConfig("weekly"),
    PeriodConfig("monthly"),
    PeriodConfig("yearly"),
    PeriodConfig("30d", 30 * DAY_MS, at("2025-01-15T00:00:00Z")),
    PeriodConfig("45m", 45 * 60_000, at("2025-01-15T00:15:00Z")),
]


@settings(max_examples=500)
@given(
    period=st.sampled_from(PERIODS),
    timezone=st.sampled_from(TIMEZONES),
    moment=st.integers(at("1971-01-01T00:00:00Z"), at("2100-01-01T00:00:00Z")),
)
def test_periods_tile_time_and_keys_invert(
    period: PeriodConfig, timezone: str, moment: int
) -> None:
    periods = PeriodCalendar(period, timezone)
    bounds = periods.bounds_at(moment)
    assert bounds.start_ms <= moment < bounds.end_ms
    assert bounds.start_ms % BUCKET_MS == 0 and bounds.end_ms % BUCKET_MS == 0
    assert periods.bounds_at(bounds.start_ms) == bounds
    assert periods.bounds_at(bounds.last_ms) == bounds
    following = periods.next_bounds(bounds)
    assert following.start_ms == bounds.end_ms
    assert periods.previous_bounds(following) == bounds
    assert periods.previous_bounds(bounds).end_ms == bounds.start_ms
    assert periods.bounds_for_key(bounds.key) == bounds
    assert periods.bounds_for_key(following.key) == following
