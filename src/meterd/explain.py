"""Why an event body was refused, in the client's words.

The fast path (`ingest.py`) decodes a whole body with msgspec at C speed and
learns only that it is invalid. This slow path runs only then: it reads the
body field by field, with the same types and rules, and names every problem,
without quoting decoder messages or patterns, and never more than a short
piece of what was sent.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Container, Sequence
from datetime import datetime
from typing import Any

import msgspec

from meterd.config.model import UnknownFields
from meterd.eventrules import (
    BATCH_FIELDS,
    SINGLE_FIELDS,
    Problem,
    event_type_problem,
    metadata_problem,
    timestamp_problem,
    value_problem,
)
from meterd.identifiers import identifier_problem

TOO_DEEP = Problem(None, "the JSON is nested too deeply")
# A field name is quoted shorter than a value: it is only there to be recognised.
_NAME_CHARS = 60

_object = msgspec.json.Decoder(dict[str, msgspec.Raw])
_array = msgspec.json.Decoder(list[msgspec.Raw])
_string = msgspec.json.Decoder(str)
_number = msgspec.json.Decoder(float)
_timestamp = msgspec.json.Decoder(int | datetime | None)
_any = msgspec.json.Decoder()
_AT_BYTE = re.compile(r"\(byte (\d+)\)")


class NotAnArray(Exception):
    """The batch body is valid JSON but not an array."""


def malformed(error: msgspec.DecodeError) -> Problem:
    """A JSON syntax error, said without the decoder's own wording."""
    message = str(error)
    if "truncated" in message:
        return Problem(None, "malformed JSON: the body ends before the JSON does")
    found = _AT_BYTE.search(message)
    if found is not None:
        return Problem(None, f"malformed JSON: unexpected character at byte offset {found[1]}")
    return Problem(None, "malformed JSON")


def batch_items(body: bytes) -> list[msgspec.Raw]:
    """The elements of a batch body, undecoded.

    Raises NotAnArray, or ValueError carrying a Problem for malformed or too deep JSON.
    """
    try:
        return _array.decode(body)
    except msgspec.ValidationError:
        raise NotAnArray() from None
    except msgspec.DecodeError as error:
        raise ValueError(malformed(error)) from None
    except RecursionError:
        raise ValueError(TOO_DEEP) from None


def explain_event(
    raw: bytes | msgspec.Raw,
    *,
    path_type: str | None,
    known_types: Container[str],
    unknown_fields: UnknownFields,
    received_ms: int,
) -> list[Problem]:
    """Every problem of one event body; `path_type` is the route's type on the single route."""
    try:
        fields = _object.decode(raw)
    except msgspec.ValidationError:
        what = "the body" if path_type is not None else "each event"
        return [Problem(None, f"{what} must be a JSON object")]
    except msgspec.DecodeError as error:
        return [malformed(error)]
    except RecursionError:
        return [TOO_DEEP]
    known = SINGLE_FIELDS if path_type is not None else BATCH_FIELDS
    problems = []
    if unknown_fields == "reject":
        problems += [unknown_field(name, known) for name in fields if name not in known]
    for name in ("customerId", "value") + (() if path_type is not None else ("eventType",)):
        if name not in fields:
            problems.append(Problem(name, "required"))
    for name, raw_value in fields.items():
        check = _CHECKS.get(name)
        if check is not None:
            try:
                problem = check(raw_value, path_type, known_types, received_ms)
            except RecursionError:
                problem = Problem(name, "is nested too deeply")
            except msgspec.DecodeError:  # e.g. a number beyond every double
                problem = Problem(name, "is not a valid value for this field")
            if problem is not None:
                problems.append(problem)
    return problems


def unknown_field(name: str, known: Sequence[str]) -> Problem:
    close = closest_field(name, known)
    hint = f" (did you mean {close!r}?)" if close else f"; the fields are {', '.join(known)}"
    return Problem(_field_name(name), f"unknown field{hint}")


def closest_field(name: str, known: Sequence[str]) -> str | None:
    """The known field `name` was most likely meant to be: same letters, or a close spelling."""
    folded = _fold(name)
    for field in known:
        if _fold(field) == folded:
            return field
    close = difflib.get_close_matches(name, known, n=1)
    return close[0] if close else None


def _fold(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def _field_name(name: str) -> str:
    return name if len(name) <= _NAME_CHARS else f"{name[:_NAME_CHARS]}..."


def _identifier(
    name: str, raw: msgspec.Raw, *, nullable: bool
) -> tuple[str | None, Problem | None]:
    try:
        value: Any = _any.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return None, Problem(name, "must be a string")
    if value is None and nullable:
        return None, None
    if not isinstance(value, str):
        return None, Problem(name, "must be a string")
    problem = identifier_problem(value)
    return value, None if problem is None else Problem(name, problem)


def _customer_id(raw: msgspec.Raw, *_: Any) -> Problem | None:
    return _identifier("customerId", raw, nullable=False)[1]


def _event_id(raw: msgspec.Raw, *_: Any) -> Problem | None:
    return _identifier("id", raw, nullable=True)[1]


def _event_type(
    raw: msgspec.Raw, path_type: str | None, known_types: Container[str], _: int
) -> Problem | None:
    value, problem = _identifier("eventType", raw, nullable=path_type is not None)
    if problem is not None or (value is None and path_type is not None):
        return problem
    return event_type_problem(value, known_types=known_types, path_type=path_type)


def _value(raw: msgspec.Raw, *_: Any) -> Problem | None:
    try:
        value = _number.decode(raw)
    except msgspec.ValidationError as error:
        if "out of range" in str(error):
            return Problem("value", "must be a finite number")
        return Problem("value", "must be a JSON number (not a string, a boolean or null)")
    return value_problem(value)


def _metadata(raw: msgspec.Raw, *_: Any) -> Problem | None:
    return metadata_problem(raw)


def _timestamp_field(raw: msgspec.Raw, _: Any, __: Any, received_ms: int) -> Problem | None:
    try:
        value = _timestamp.decode(raw)
    except msgspec.DecodeError:
        return Problem(
            "timestamp",
            'must be an ISO-8601 time like "2025-01-15T10:00:00Z" or whole epoch milliseconds',
        )
    return None if value is None else timestamp_problem(value, received_ms)


_CHECKS = {
    "customerId": _customer_id,
    "id": _event_id,
    "eventType": _event_type,
    "value": _value,
    "metadata": _metadata,
    "timestamp": _timestamp_field,
}
