"""Billing-period arithmetic: which period an instant belongs to, and period keys.

Every instant is UTC epoch milliseconds. Calendar periods (hourly, daily, weekly,
monthly, yearly) follow the wall clock of the configured IANA timezone, DST included;
custom periods are a fixed length counted from an anchor and use the timezone only to
spell their keys. Periods are half-open, [start_ms, end_ms).

meterd keeps partial aggregates per 15-minute bucket, so every period boundary must be
a multiple of BUCKET_MS. That holds for every offset in use today (+05:45 included);
it fails for local mean time before standard time was adopted (Africa/Monrovia until
1972, most zones before 1970) and for a few clock changes made at hh:01 (Canada's
Atlantic zones until 2011, Gaza/Hebron 2010-2011, Antarctica/Casey 2020-2022). A
period whose bounds would not fall on a bucket raises ValueError rather than being
silently mis-aggregated.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from meterd.config.model import CalendarPeriod, PeriodConfig
from meterd.timeutil import datetime_to_ms, format_ms

BUCKET_MS = 15 * 60 * 1000

_REPEAT_SUFFIX = "b"
_HOUR_KEY = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})([0-9]{2})(b?)")
_MINUTE_KEY = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})([0-9]{2})([0-9]{2})(b?)")


class PeriodBounds(NamedTuple):
    """One period: its key and the instants it spans, [start_ms, end_ms)."""

    key: str
    start_ms: int
    end_ms: int

    @property
    def last_ms(self) -> int:
        """The period's last millisecond, as `periodEnd` shows it."""
        return self.end_ms - 1


class _DayRule(NamedTuple):
    """How a period made of whole local days starts, steps on and is keyed."""

    floor: Callable[[date], date]
    step: Callable[[date], date]
    key: Callable[[date], str]
    parse: Callable[[str], date]


def _key_numbers(key: str, *widths: int) -> list[int]:
    match = re.fullmatch("".join(f"([0-9]{{{width}}})" for width in widths), key)
    if match is None:
        raise ValueError(f"expected {sum(widths)} digits")
    return [int(group) for group in match.groups()]


def _date_key(day: date) -> str:
    return f"{day.year:04d}{day.month:02d}{day.day:02d}"


def _hour_key(local: datetime) -> str:
    return f"{_date_key(local)}{local.hour:02d}"


def _iso_week_key(monday: date) -> str:
    iso = monday.isocalendar()
    return f"{iso.year:04d}{iso.week:02d}"


def _parse_iso_week(key: str) -> date:
    year, week = _key_numbers(key, 4, 2)
    return date.fromisocalendar(year, week, 1)


def _next_month(day: date) -> date:
    return date(day.year + 1, 1, 1) if day.month == 12 else date(day.year, day.month + 1, 1)


def _parse_month(key: str) -> date:
    year, month = _key_numbers(key, 4, 2)
    return date(year, month, 1)


def _parse_year(key: str) -> date:
    (year,) = _key_numbers(key, 4)
    return date(year, 1, 1)


_DAY_RULES: dict[str, _DayRule] = {
    "daily": _DayRule(
        floor=lambda day: day,
        step=lambda day: day + timedelta(days=1),
        key=_date_key,
        parse=lambda key: date(*_key_numbers(key, 4, 2, 2)),
    ),
    "weekly": _DayRule(
        floor=lambda day: day - timedelta(days=day.weekday()),
        step=lambda day: day + timedelta(days=7),
        key=_iso_week_key,
        parse=_parse_iso_week,
    ),
    "monthly": _DayRule(
        floor=lambda day: day.replace(day=1),
        step=_next_month,
        key=lambda day: f"{day.year:04d}{day.month:02d}",
        parse=_parse_month,
    ),
    "yearly": _DayRule(
        floor=lambda day: date(day.year, 1, 1),
        step=lambda day: date(day.year + 1, 1, 1),
        key=lambda day: f"{day.year:04d}",
        parse=_parse_year,
    ),
}


def _zone(timezone: str) -> ZoneInfo:
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"{timezone!r} is not a known IANA timezone") from None


def _hour_of(local: datetime) -> tuple[int, int, int, int]:
    return (local.year, local.month, local.day, local.hour)


def _opens_hour(before: datetime, here: datetime) -> bool:
    # A fall-back that repeats local time starts a new hour even mid-hour, so the
    # repeated stretch gets its own "b" period; the moment the repetition ends does
    # not, which keeps every hourly key unique (Pacific/Chatham repeats 02:45-03:45).
    return _hour_of(before) != _hour_of(here) or (here.fold == 1 and before.fold == 0)


class PeriodCalendar:
    """The successive periods of one configured period in one timezone.

    Calendar periods follow the local wall clock: hourly from hh:00 to the next hour,
    daily from local midnight (23 or 25 hours across DST changes), weekly from Monday
    (ISO weeks), monthly from the 1st, yearly from 1 January. A period whose local
    start does not exist (midnight in a DST gap, as in America/Santiago) starts at the
    first instant after the gap; a day skipped entirely (Pacific/Apia, 2011-12-30) has
    no period.

    Keys, all in local terms: hourly `YYYYMMDDHH`, daily `YYYYMMDD`, weekly `YYYYWW`
    (ISO year and week), monthly `YYYYMM`, yearly `YYYY`. When a fall-back repeats
    local time, the hours that begin inside the repeated stretch are keyed with a "b"
    suffix: in Europe/Oslo on 2025-10-26, 02:00-03:00 CEST is "2025102602" and the
    repeated 02:00-03:00 CET is "2025102602b".

    Custom periods are [anchor + k*every, anchor + (k+1)*every) for every integer k,
    whatever the timezone; the anchor defaults to the Unix epoch. Their key is the
    local start `YYYYMMDDHHMM`, with the same "b" suffix when that local minute is the
    second of two, so keys read naturally to the operator and still invert exactly.
    """

    def __init__(self, period: PeriodConfig, timezone: str) -> None:
        if period.every_ms is None:
            if period.name != "hourly" and period.name not in _DAY_RULES:
                raise ValueError(
                    f"period {period.name!r} is neither a calendar period"
                    " (hourly, daily, weekly, monthly, yearly) nor has a length"
                )
        elif period.every_ms <= 0 or period.every_ms % BUCKET_MS:
            raise ValueError(f"period {period.name!r}: length must be a positive multiple of 15m")
        elif (period.anchor_ms or 0) % BUCKET_MS:
            raise ValueError(f"period {period.name!r}: anchor must be aligned to 15 minutes")
        self.name = period.name
        self.timezone = timezone
        self._zone = _zone(timezone)
        self._every_ms = period.every_ms
        self._anchor_ms = period.anchor_ms or 0
        self._day_rule = _DAY_RULES.get(period.name) if period.every_ms is None else None
        # Listing events asks for the same few periods over and over.
        self._first_instant: Callable[[datetime], int] = lru_cache(maxsize=1024)(
            self._find_first_instant
        )
        self._hour_of_bucket: Callable[[int], PeriodBounds] = lru_cache(maxsize=1024)(
            self._find_hour_of_bucket
        )

    def __repr__(self) -> str:
        return f"PeriodCalendar({self.name!r}, {self.timezone!r})"

    def bounds_at(self, ts_ms: int) -> PeriodBounds:
        """The period containing the instant `ts_ms`.

        Raises ValueError if that period's bounds are not on 15-minute buckets.
        """
        if self._every_ms is not None:
            return self._fixed_bounds_at(self._every_ms, ts_ms)
        if self._day_rule is None:
            return self._hourly_bounds_at(ts_ms)
        return self._day_bounds_at(self._day_rule, ts_ms)

    def next_bounds(self, bounds: PeriodBounds) -> PeriodBounds:
        """The period that starts where `bounds` ends."""
        return self.bounds_at(bounds.end_ms)

    def previous_bounds(self, bounds: PeriodBounds) -> PeriodBounds:
        """The period that ends where `bounds` starts."""
        return self.bounds_at(bounds.start_ms - 1)

    def bounds_between(self, start_ms: int, end_ms: int) -> Iterator[PeriodBounds]:
        """Every period overlapping [start_ms, end_ms), oldest first."""
        if end_ms <= start_ms:
            return
        bounds = self.bounds_at(start_ms)
        yield bounds
        while bounds.end_ms < end_ms:
            bounds = self.next_bounds(bounds)
            yield bounds

    def bounds_for_key(self, key: str) -> PeriodBounds:
        """The period whose key is `key`.

        Raises ValueError if `key` is malformed or names a period that does not exist
        (an hour or day skipped by a clock change, a "b" hour that was not repeated, a
        custom key that is not a period start).
        """
        try:
            if self._every_ms is not None:
                bounds = self._fixed_bounds_for_key(self._every_ms, key)
            elif self._day_rule is None:
                bounds = self._hourly_bounds_for_key(key)
            else:
                bounds = self._day_bounds_for_key(self._day_rule, key)
        except ValueError as exc:
            raise ValueError(f"{key!r} is not a {self.name} period key: {exc}") from None
        if bounds is None or bounds.key != key:
            raise ValueError(f"{key!r} is not a {self.name} period in {self.timezone}")
        return bounds

    def _local(self, ms: int) -> datetime:
        # Offsets change only on whole seconds, so second resolution is exact here.
        return datetime.fromtimestamp(ms // 1000, self._zone)

    def _checked(self, bounds: PeriodBounds) -> PeriodBounds:
        if bounds.start_ms % BUCKET_MS or bounds.end_ms % BUCKET_MS:
            raise ValueError(
                f"{self.name} period {bounds.key} in {self.timezone} runs from"
                f" {format_ms(bounds.start_ms)} to {format_ms(bounds.end_ms)}, which is not"
                " on 15-minute buckets (the zone's offset or clock change then is not"
                " a multiple of 15 minutes)"
            )
        return bounds

    def _find_first_instant(self, wall: datetime) -> int:
        """The first instant whose local time is at least `wall` (a naive datetime)."""
        # fold=0 picks the earlier of two occurrences; inside a gap it lands after it.
        after = datetime_to_ms(wall.replace(tzinfo=self._zone, fold=0))
        if self._local(after).replace(tzinfo=None) == wall:
            return after
        # `wall` is skipped by a gap: the period opens at the clock change itself,
        # which lies between the two readings of `wall`. Gaps are rare, so bisect.
        low = datetime_to_ms(wall.replace(tzinfo=self._zone, fold=1)) // 1000
        high = after // 1000
        while high - low > 1:
            middle = (low + high) // 2
            if self._local(middle * 1000).replace(tzinfo=None) >= wall:
                high = middle
            else:
                low = middle
        return high * 1000

    def _day_bounds_at(self, rule: _DayRule, ts_ms: int) -> PeriodBounds:
        day = rule.floor(self._local(ts_ms).date())
        start = self._first_instant(datetime.combine(day, datetime.min.time()))
        following = rule.step(day)
        end = self._first_instant(datetime.combine(following, datetime.min.time()))
        # A fall-back across midnight (00:01 -> 23:01, Canada before 2011) stamps some
        # instants of the new day with yesterday's date; they still follow its start.
        while end <= ts_ms:
            day, start = following, end
            following = rule.step(day)
            end = self._first_instant(datetime.combine(following, datetime.min.time()))
        return self._checked(PeriodBounds(rule.key(day), start, end))

    def _day_bounds_for_key(self, rule: _DayRule, key: str) -> PeriodBounds | None:
        day = rule.parse(key)
        start = self._first_instant(datetime.combine(day, datetime.min.time()))
        end = self._first_instant(datetime.combine(rule.step(day), datetime.min.time()))
        if end <= start:
            return None
        return self._checked(PeriodBounds(rule.key(day), start, end))

    def _hourly_bounds_at(self, ts_ms: int) -> PeriodBounds:
        return self._hour_of_bucket(ts_ms - ts_ms % BUCKET_MS)

    def _find_hour_of_bucket(self, bucket: int) -> PeriodBounds:
        # An hour can be shortened or split by clock changes, so walk outwards bucket
        # by bucket to where the local hour (or the fold) changes; hours span at most
        # a handful of buckets.
        first = self._local(bucket)
        last = self._local(bucket + BUCKET_MS - 1)
        self._check_bucket(bucket, first, last)

        start, start_local = bucket, first
        while True:
            before_last = self._local(start - 1)
            if _opens_hour(before_last, start_local):
                break
            start -= BUCKET_MS
            before_first = self._local(start)
            self._check_bucket(start, before_first, before_last)
            start_local = before_first

        end, end_local = bucket + BUCKET_MS, last
        while True:
            after_first = self._local(end)
            if _opens_hour(end_local, after_first):
                break
            after_last = self._local(end + BUCKET_MS - 1)
            self._check_bucket(end, after_first, after_last)
            end += BUCKET_MS
            end_local = after_last

        key = _hour_key(start_local)
        return PeriodBounds(key + _REPEAT_SUFFIX if start_local.fold else key, start, end)

    def _check_bucket(self, bucket: int, first: datetime, last: datetime) -> None:
        if _opens_hour(first, last):
            raise ValueError(
                f"hourly periods in {self.timezone} near {format_ms(bucket)} are not on"
                " 15-minute buckets (the zone's offset or clock change then is not a"
                " multiple of 15 minutes)"
            )

    def _hourly_bounds_for_key(self, key: str) -> PeriodBounds | None:
        match = _HOUR_KEY.fullmatch(key)
        if match is None:
            raise ValueError("expected YYYYMMDDHH, optionally followed by 'b'")
        year, month, day, hour = (int(group) for group in match.groups()[:4])
        fold = 1 if match[5] else 0
        hour_start = datetime(year, month, day, hour, fold=fold)
        # Clock changes can start an hour's period a quarter or half past (Lord Howe
        # moves by 30 minutes), so probe each bucket-aligned minute of the hour.
        for minute in range(0, 60, BUCKET_MS // 60_000):
            wall = hour_start.replace(minute=minute)
            probe = datetime_to_ms(wall.replace(tzinfo=self._zone))
            local = self._local(probe)
            if local.replace(tzinfo=None) != wall or local.fold != fold:
                continue
            bounds = self._hourly_bounds_at(probe)
            if bounds.key == key:
                return bounds
        return None

    def _fixed_bounds_at(self, every_ms: int, ts_ms: int) -> PeriodBounds:
        start = self._anchor_ms + (ts_ms - self._anchor_ms) // every_ms * every_ms
        return PeriodBounds(self._minute_key(start), start, start + every_ms)

    def _minute_key(self, ms: int) -> str:
        local = self._local(ms)
        key = f"{_hour_key(local)}{local.minute:02d}"
        return key + _REPEAT_SUFFIX if local.fold else key

    def _fixed_bounds_for_key(self, every_ms: int, key: str) -> PeriodBounds | None:
        match = _MINUTE_KEY.fullmatch(key)
        if match is None:
            raise ValueError("expected YYYYMMDDHHMM, optionally followed by 'b'")
        year, month, day, hour, minute = (int(group) for group in match.groups()[:5])
        wall = datetime(year, month, day, hour, minute, fold=1 if match[6] else 0)
        probe = datetime_to_ms(wall.replace(tzinfo=self._zone))
        # Snap to the nearest period start: under an offset with seconds (local mean
        # time) the key drops them, and a wrong key is caught by the caller's check.
        start = self._anchor_ms + (probe - self._anchor_ms + every_ms // 2) // every_ms * every_ms
        return PeriodBounds(self._minute_key(start), start, start + every_ms)


_KEY_FIELDS: tuple[tuple[str, CalendarPeriod], ...] = (
    ("hour", "hourly"),
    ("day", "daily"),
    ("week", "weekly"),
    ("month", "monthly"),
    ("year", "yearly"),
)


@lru_cache(maxsize=256)
def _calendar(period: CalendarPeriod, timezone: str) -> PeriodCalendar:
    return PeriodCalendar(PeriodConfig(name=period), timezone)


def period_keys(ts_ms: int, timezone: str) -> dict[str, str]:
    """The hourly, daily, weekly, monthly and yearly keys of the instant `ts_ms`.

    Returns `{"hour": ..., "day": ..., "week": ..., "month": ..., "year": ...}` in the
    terms of `timezone`, exactly as PeriodCalendar keys those periods.
    """
    return {
        field: _calendar(period, timezone).bounds_at(ts_ms).key for field, period in _KEY_FIELDS
    }
