"""OpenMeter's `advancedMeterGroupByFilters`, reduced to "value in S" or "value not in S".

Per group-by key OpenMeter sends a FilterString: `{"$eq": "a"}`, `{"$ne": "a"}`,
`{"$in": [...]}`, `{"$nin": [...]}`, `{"$and": [...]}`, `{"$or": [...]}` (several
operators in one object must all hold). Every such expression denotes a set of
values that is finite (`in S`) or the complement of a finite one (`not in S`), and
these two forms are closed under AND and OR, so each key's filter becomes one
`GroupFilter` that the usage query (meterd/meters/query.py) applies to its group
values, in SQL on both backends.

A missing group value (the event has no such key, or JSON null) is `None`: it is in
no `in` set and in every `not in` set, so `{"$ne": "a"}` keeps events without the
key. That is what OpenMeter answers too: its ClickHouse query compares
`JSON_VALUE(data, path) <> 'a'`, and JSON_VALUE gives '' for a missing path.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from meterd.errors import InvalidRequest
from meterd.meters.groups import GroupFilter

FIELD = "advancedMeterGroupByFilters"
SUPPORTED = ("$eq", "$ne", "$in", "$nin", "$and", "$or")
_MAX_DEPTH = 8
_EXPECTED = 'expected a JSON object such as {"model": {"$eq": "gpt-4o"}}'


EVERYTHING = GroupFilter(frozenset(), negated=True)


def parse_group_filters(text: str, *, keys: tuple[str, ...]) -> dict[str, GroupFilter]:
    """The JSON text of `advancedMeterGroupByFilters`, on the meter's group-by `keys`."""
    try:
        document = msgspec.json.decode(text)
    except msgspec.DecodeError:
        raise _invalid(f"not JSON; {_EXPECTED}") from None
    except RecursionError:
        raise _invalid("nested too deeply") from None
    if not isinstance(document, dict):
        raise _invalid(_EXPECTED)
    filters = {}
    for key, expression in document.items():
        if key not in keys:
            shown = ", ".join(keys) or "none"
            raise _invalid(f"{key!r} is not a groupBy key of this meter (it has: {shown})")
        filters[key] = reduce_filter(expression, where=f"{FIELD}.{key}")
    return filters


def reduce_filter(expression: object, *, where: str, depth: int = 0) -> GroupFilter:
    if depth > _MAX_DEPTH:
        raise _invalid(f"{where}: nested more than {_MAX_DEPTH} deep")
    if not isinstance(expression, Mapping) or not expression:
        raise _invalid(f"{where}: expected an object of operators ({', '.join(SUPPORTED)})")
    result = EVERYTHING
    for operator, operand in expression.items():
        at = f"{where}.{operator}"
        result = result.both(_operator(operator, operand, at, depth))
    return result


def _operator(operator: str, operand: object, at: str, depth: int) -> GroupFilter:
    if operator in ("$eq", "$ne"):
        value = _text(operand, at)
        return GroupFilter(frozenset([value]), negated=operator == "$ne")
    if operator in ("$in", "$nin"):
        values = _texts(operand, at)
        return GroupFilter(frozenset(values), negated=operator == "$nin")
    if operator in ("$and", "$or"):
        if not isinstance(operand, list) or not operand:
            raise _invalid(f"{at}: expected a non-empty array of filters")
        parts = [
            reduce_filter(item, where=f"{at}[{index}]", depth=depth + 1)
            for index, item in enumerate(operand)
        ]
        combined = parts[0]
        for part in parts[1:]:
            combined = combined.both(part) if operator == "$and" else combined.either(part)
        return combined
    raise _invalid(f"{at}: not supported; meterd takes {', '.join(SUPPORTED)}")


def _text(operand: object, at: str) -> str:
    if not isinstance(operand, str):
        raise _invalid(f"{at}: expected a string")
    return operand


def _texts(operand: object, at: str) -> list[str]:
    if not isinstance(operand, list):
        raise _invalid(f"{at}: expected an array of strings")
    return [_text(item, f"{at}[{index}]") for index, item in enumerate(operand)]


def _invalid(message: str) -> InvalidRequest:
    text = message if message.startswith(FIELD) else f"{FIELD}: {message}"
    return InvalidRequest(text, field=FIELD)
