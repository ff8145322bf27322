"""Query windows (DESIGN §7): hour, day, week or month in any IANA time zone, DST-correct."""

from __future__ import annotations

import itertools
from typing import Literal

from meterd.config.model import CalendarPeriod, PeriodConfig
from meterd.errors import InvalidRequest
from meterd.periods import PeriodCalendar

WindowSize = Literal["hour", "day", "week", "month"]
WINDOW_SIZES: dict[str, CalendarPeriod] = {
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
    try:
        calendar = PeriodCalendar(PeriodConfig(WINDOW_SIZES[size]), timezone)
        found = list(itertools.islice(calendar.bounds_between(from_ms, to_ms), MAX_WINDOWS + 1))
    except ValueError as error:
        raise InvalidRequest(
            f"windowTimeZone: {timezone!r} cannot be used here: {error}", field="windowTimeZone"
        ) from None
    if len(found) > MAX_WINDOWS:
        raise InvalidRequest(
            f"windowSize: the range holds more than {MAX_WINDOWS} {size} windows;"
            " use a larger windowSize or a shorter range",
            field="windowSize",
        )
    return [(max(b.start_ms, from_ms), min(b.end_ms, to_ms)) for b in found]
