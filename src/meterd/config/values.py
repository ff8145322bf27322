"""Scalar values the schema cannot fully check: durations, time zones, instants."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from meterd.config.problems import Location, Problems, quote
from meterd.durations import parse_duration


def duration_ms(value: object, location: Location, problems: Problems) -> int | None:
    """A duration string in milliseconds; None (reported) if it is out of range.

    Values of the wrong type or form are left to the schema.
    """
    if not isinstance(value, str):
        return None
    try:
        return parse_duration(value)
    except ValueError as error:
        problems.report(location, str(error))
        return None


def timezone(value: object, location: Location, problems: Problems) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # OSError: a name like "Europe" is a directory of the tz database, not a zone.
        problems.report(location, f'{quote(value)} is not an IANA time zone like "Europe/Oslo"')
        return None
    return value
