"""The `alertThresholds` key of `systemconfig.json`: percentages of a limit that alert.

`[80, 100]` (the default) sends `usage.threshold_crossed` when a customer's usage reaches
80% and again at 100% of a limit; a customer's limit may give its own list. The JSON
Schema checks the shape; `threshold_problem` says the same of a customer's own list.
"""

from __future__ import annotations

DEFAULT_ALERT_THRESHOLDS: tuple[float, ...] = (80.0, 100.0)
MAX_THRESHOLD = 1000.0
MAX_THRESHOLDS = 20


def threshold_problem(value: object) -> str | None:
    """Why `value` is not a list of alert thresholds, or None if it is one."""
    if not isinstance(value, list):
        return "expected an array of percentages like [80, 100]"
    if len(value) > MAX_THRESHOLDS:
        return f"at most {MAX_THRESHOLDS} thresholds"
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int | float):
            return f"expected numbers (percent of the limit), got {item!r}"
        if not 0 < item <= MAX_THRESHOLD:
            return f"{item!r} is out of range: a threshold is more than 0 and at most 1000 (%)"
    if len(set(value)) != len(value):
        return "a threshold is listed twice"
    return None


def read_alert_thresholds(value: object) -> tuple[float, ...]:
    """The top-level `alertThresholds` (None: absent), sorted.

    The JSON Schema reports what is wrong with it; an invalid list stops meterd anyway,
    so the default stands in until then.
    """
    if value is None or threshold_problem(value) is not None:
        return DEFAULT_ALERT_THRESHOLDS
    assert isinstance(value, list)
    return tuple(sorted(float(item) for item in value))
