"""Durations as the config spells them ("500ms", "30s", "5m", "2h", "30d", "1w").

meterd holds every duration as integer milliseconds.
"""

from __future__ import annotations

import re

_UNIT_MS = {
    "w": 7 * 86_400_000,
    "d": 86_400_000,
    "h": 3_600_000,
    "m": 60_000,
    "s": 1_000,
    "ms": 1,
}
_DURATION = re.compile(r"([0-9]+)(ms|s|m|h|d|w)", re.ASCII)

# Far beyond any sensible period or retry delay, and small enough that
# "now + duration" can never overflow a 64-bit epoch-millisecond column.
MAX_DURATION_MS = 36_500 * 86_400_000
_MAX_AMOUNT_DIGITS = len(str(MAX_DURATION_MS))


def parse_duration(text: str) -> int:
    """Milliseconds in a duration string such as "500ms", "30s", "5m", "2h", "30d" or "1w".

    The amount is a whole number (no sign, no fraction, no spaces). Raises ValueError
    with a message fit to show the operator.
    """
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(
            f'{_quoted(text)} is not a duration like "500ms", "30s", "5m", "2h" or "30d"'
        )
    amount, unit = match.groups()
    if len(amount) > _MAX_AMOUNT_DIGITS or int(amount) * _UNIT_MS[unit] > MAX_DURATION_MS:
        raise ValueError(f"{_quoted(text)} is too long: durations are at most 36500d (100 years)")
    return int(amount) * _UNIT_MS[unit]


def format_duration(ms: int) -> str:
    """The shortest spelling of `ms` in one exact unit: 3600000 -> "1h", 5400000 -> "90m".

    Zero is "0s". The result always parses back to `ms` with `parse_duration`.
    """
    if ms < 0:
        raise ValueError(f"a duration cannot be negative, got {ms} ms")
    if ms == 0:
        return "0s"
    for unit, size in _UNIT_MS.items():
        if ms % size == 0:
            return f"{ms // size}{unit}"
    raise AssertionError("unreachable: every whole number of ms is a multiple of 1ms")


def _quoted(text: str) -> str:
    shown = text if len(text) <= 40 else text[:40] + "…"
    return '"' + shown.replace("\\", "\\\\").replace('"', '\\"') + '"'
