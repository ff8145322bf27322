"""A naive reference for OpenMeter meter queries, straight over the raw events.

Written apart from meterd's query code so the tests compare two independent answers:
group values as text (a missing key or JSON null is None), OpenMeter's string filters
as OpenMeter's ClickHouse query applies them (`$ne`/`$nin` keep the missing value,
`$eq`/`$in` never match it), windows as local minutes (or one window for the range).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

MINUTE_MS = 60_000
RowKey = tuple[int, int, str | None, tuple[str | None, ...]]


@dataclass(frozen=True)
class RawEvent:
    id: str
    customer_id: str
    ts_ms: int
    value: float
    metadata: Mapping[str, Any] = field(default_factory=dict)


def group_text(metadata: Mapping[str, Any], key: str) -> str | None:
    value = metadata.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def keeps(expression: Mapping[str, Any], value: str | None) -> bool:
    """One OpenMeter FilterString on one group value (every operator in it must hold)."""
    results = []
    for operator, operand in expression.items():
        if operator == "$eq":
            results.append(value == operand)
        elif operator == "$ne":
            results.append(value != operand)
        elif operator == "$in":
            results.append(value in operand)
        elif operator == "$nin":
            results.append(value not in operand)
        elif operator == "$and":
            results.append(all(keeps(part, value) for part in operand))
        elif operator == "$or":
            results.append(any(keeps(part, value) for part in operand))
        else:
            raise AssertionError(f"the reference has no {operator}")
    return all(results)


def reference_rows(
    events: Iterable[RawEvent],
    *,
    op: str,
    from_ms: int,
    to_ms: int,
    minute_windows: bool,
    group_by: Sequence[str] = (),
    subjects: Sequence[str] = (),
    filters: Mapping[str, Mapping[str, Any]] | None = None,
    unique_property: str = "",
) -> dict[RowKey, float]:
    """(windowStart ms, windowEnd ms, subject or None, group values) -> value."""
    members: dict[RowKey, list[RawEvent]] = {}
    for event in events:
        if not from_ms <= event.ts_ms < to_ms:
            continue
        if subjects and event.customer_id not in subjects:
            continue
        if not all(
            keeps(expression, group_text(event.metadata, key))
            for key, expression in (filters or {}).items()
        ):
            continue
        if minute_windows:
            start = event.ts_ms - event.ts_ms % MINUTE_MS
            window = (max(start, from_ms), min(start + MINUTE_MS, to_ms))
        else:
            window = (from_ms, to_ms)
        key: RowKey = (
            *window,
            event.customer_id if subjects else None,
            tuple(group_text(event.metadata, k) for k in group_by),
        )
        members.setdefault(key, []).append(event)
    values: dict[RowKey, float] = {}
    for key, found in members.items():
        if op == "sum":
            values[key] = sum(e.value for e in found)
        elif op == "count":
            values[key] = len(found)
        elif op == "unique_count":
            seen = {group_text(e.metadata, unique_property) for e in found}
            values[key] = len(seen - {None})
        else:
            raise AssertionError(f"the reference has no op {op}")
    return values
