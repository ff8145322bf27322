"""The corrections section of the config: `maxEventAge` (DESIGN.md section 8)."""

from __future__ import annotations

from meterd.config.problems import Problems
from meterd.config.values import duration_ms


def max_event_age_ms(value: object, problems: Problems) -> int | None:
    """`maxEventAge` in milliseconds, or None (no limit) when absent; it must exceed 0s."""
    if value is None:
        return None
    age = duration_ms(value, ("maxEventAge",), problems)
    if age is not None and age <= 0:
        problems.report(("maxEventAge",), "must be longer than 0s")
        return None
    return age
