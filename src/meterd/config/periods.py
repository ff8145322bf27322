"""The `periods` section: calendar names and custom periods, checked past the schema."""

from __future__ import annotations

from meterd.config.model import PeriodConfig
from meterd.config.problems import Location, Problems, json_path, quote
from meterd.config.values import duration_ms
from meterd.timeutil import parse_iso_ms

# Period bounds must fall on the 15-minute buckets that partial aggregates use.
BUCKET_MS = 15 * 60 * 1000


def read_periods(value: object, problems: Problems) -> tuple[PeriodConfig, ...]:
    """The periods in `value` (the document's "periods"); names must be unique."""
    if not isinstance(value, list):
        return ()
    periods: list[PeriodConfig] = []
    first_use: dict[str, Location] = {}
    for index, item in enumerate(value):
        location: Location = ("periods", index)
        period = _period(item, location, problems)
        if period is None:
            continue
        if not period.is_calendar:
            location = (*location, "name")
        if period.name in first_use:
            used = first_use[period.name]
            problems.report(location, f"{quote(period.name)} is already used by {json_path(used)}")
            continue
        first_use[period.name] = location
        periods.append(period)
    return tuple(periods)


def declared_period_names(value: object) -> tuple[str, ...] | None:
    """Every period name the file declares, valid or not; None if `periods` is unusable.

    Webhooks are checked against these rather than against the valid periods alone,
    so one bad period is reported once, not again by every webhook that names it.
    """
    if not isinstance(value, list):
        return None
    names = (item.get("name") if isinstance(item, dict) else item for item in value)
    return tuple(dict.fromkeys(name for name in names if isinstance(name, str)))


def _period(item: object, location: Location, problems: Problems) -> PeriodConfig | None:
    if isinstance(item, str):
        return PeriodConfig(item)
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        return None
    every_ms = _period_length(item.get("every"), (*location, "every"), problems)
    anchor_ms = _anchor_ms(item.get("anchor"), (*location, "anchor"), problems)
    if every_ms is None or anchor_ms is None:
        return None
    return PeriodConfig(item["name"], every_ms=every_ms, anchor_ms=anchor_ms)


def _period_length(value: object, location: Location, problems: Problems) -> int | None:
    every_ms = duration_ms(value, location, problems)
    if every_ms is not None and (every_ms == 0 or every_ms % BUCKET_MS):
        problems.report(location, f"{quote(str(value))} is not a positive multiple of 15 minutes")
        return None
    return every_ms


def _anchor_ms(value: object, location: Location, problems: Problems) -> int | None:
    if value is None:
        return 0
    if not isinstance(value, str):
        return None
    try:
        anchor_ms = parse_iso_ms(value)
    except ValueError:
        problems.report(
            location, f'{quote(value)} is not an ISO-8601 time like "2025-01-15T00:00:00Z"'
        )
        return None
    if anchor_ms % BUCKET_MS:
        problems.report(
            location, f"{quote(value)} is not on a 15-minute boundary (hh:00, :15, :30, :45)"
        )
        return None
    return anchor_ms
