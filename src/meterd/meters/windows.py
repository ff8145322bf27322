"""Query windows (DESIGN §7): minute, hour, day, week or month in any IANA time zone,
DST-correct."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Literal
from zoneinfo import ZoneInfo

from meterd.config.model import CalendarPeriod, PeriodConfig
from meterd.errors import InvalidRequest
from meterd.periods import PeriodCalendar

WindowSize = Literal["minute", "hour", "day", "week", "month"]
MINUTE_MS = 60_000
WINDOW_SIZES: dict[str, CalendarPeriod | None] = {
    "minute": None,  # not a period: cut by `_minute_starts`
    "hour": "hourly",
    "day": "daily",
    "week": "weekly",
    "month": "monthly",
}
MAX_WINDOWS = 10_000


def windows(
    *, from_ms: int, to_ms: int, size: WindowSize | None, timezone: str
) -> list[tuple[int, int]]:
    """Half-open windows covering [from_ms, to_ms), the first and last cut to the range.

    Raises InvalidRequest naming `windowSize` beyond MAX_WINDOWS windows, and
    `windowTimeZone` for a zone whose boundaries do not fall on 15 minutes.
    """
    if size is None:
        return [(from_ms, to_ms)]
    period = WINDOW_SIZES[size]
    if period is None:
        starts = list(itertools.islice(_minute_starts(from_ms, to_ms, timezone), MAX_WINDOWS + 1))
        found = list(zip(starts, [*starts[1:], to_ms], strict=True))
    else:
        try:
            calendar = PeriodCalendar(PeriodConfig(period), timezone)
            bounds = itertools.islice(calendar.bounds_between(from_ms, to_ms), MAX_WINDOWS + 1)
            found = [(b.start_ms, b.end_ms) for b in bounds]
        except ValueError as error:
            raise InvalidRequest(
                f"windowTimeZone: {timezone!r} cannot be used here: {error}",
                field="windowTimeZone",
            ) from None
    if len(found) > MAX_WINDOWS:
        raise InvalidRequest(
            f"windowSize: the range holds more than {MAX_WINDOWS} {size} windows;"
            " use a larger windowSize or a shorter range",
            field="windowSize",
        )
    return [(max(start, from_ms), min(end, to_ms)) for start, end in found]


def _minute_starts(from_ms: int, to_ms: int, timezone: str) -> Iterator[int]:
    """The start of each local minute that meets [from_ms, to_ms), the first cut to from_ms.

    Local minutes are UTC minutes shifted by the seconds of the zone's offset, which
    only some historical offsets (local mean time) have.
    """
    zone = ZoneInfo(timezone)
    at = from_ms
    while at < to_ms:
        yield at
        start = at
        at = _local_minute_floor(at, zone) + MINUTE_MS
        # An offset whose seconds change here moves the boundary (historical zones only).
        moved = _local_minute_floor(at, zone)
        at = moved if moved > start else at


def _local_minute_floor(ms: int, zone: ZoneInfo) -> int:
    return ms - (ms + _offset_seconds_ms(ms, zone)) % MINUTE_MS


def _offset_seconds_ms(ms: int, zone: ZoneInfo) -> int:
    offset = datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(zone).utcoffset()
    seconds = int(offset.total_seconds()) if offset is not None else 0
    return (seconds % 60) * 1000
