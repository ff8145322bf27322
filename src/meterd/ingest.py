"""Usage-event input: the request shapes and the rules an event must pass.

Parsing is one C-speed msgspec decode for the common, valid case; only an
invalid body takes the slower path that names every problem per event.
"""

from __future__ import annotations

import math
import random
from collections.abc import Container
from datetime import datetime
from typing import Annotated

import msgspec

from meterd.durations import format_duration
from meterd.errors import BatchTooLarge, InvalidRequest, ValidationFailed
from meterd.timeutil import datetime_to_ms

MAX_FUTURE_MS = 5 * 60 * 1000
_TOO_DEEP = "the JSON is nested too deeply"
# Epoch values below this (1973-03-03 in ms) are almost surely seconds sent by mistake.
MIN_EPOCH_MS = 100_000_000_000

# No control characters: ids travel in URLs, headers and logs.
Identifier = Annotated[
    str, msgspec.Meta(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+\Z")
]
Metadata = Annotated[
    msgspec.Raw,
    msgspec.Meta(extra_json_schema={"type": "object", "description": "Free-form JSON object."}),
]
Timestamp = Annotated[
    int | datetime,
    msgspec.Meta(
        extra_json_schema={
            "description": "ISO-8601 time (no offset means UTC) or epoch milliseconds; "
            "defaults to the arrival time; at most 5 minutes in the future."
        }
    ),
]


class UsageIn(msgspec.Struct, rename="camel"):
    """Body of `POST /usage/{eventType}`."""

    customer_id: Identifier
    value: float
    metadata: Metadata = msgspec.field(default_factory=msgspec.Raw)
    timestamp: Timestamp | None = None
    id: Identifier | None = None


class BatchEventIn(UsageIn, rename="camel"):
    """One element of the `POST /usagebatch` array."""

    event_type: Identifier = ""


class NewEvent(msgspec.Struct, array_like=True, gc=False):
    """A validated event on its way to storage."""

    id: str
    event_type: str
    customer_id: str
    value: float
    metadata: bytes | None
    ts_ms: int
    received_ms: int


class ValidationProblem(msgspec.Struct):
    index: int
    errors: list[str]


_usage_decoder = msgspec.json.Decoder(UsageIn)
_batch_decoder = msgspec.json.Decoder(list[BatchEventIn])
_event_decoder = msgspec.json.Decoder(BatchEventIn)
_raw_list_decoder = msgspec.json.Decoder(list[msgspec.Raw])


def new_event_id(received_ms: int) -> str:
    """A server-assigned id: time-ordered, so the id index grows at its end."""
    return f"{received_ms:012x}{random.getrandbits(64):016x}"


def parse_usage(
    body: bytes,
    *,
    event_type: str,
    idempotency_key: str | None,
    known_types: Container[str],
    received_ms: int,
    max_event_age_ms: int | None = None,
) -> NewEvent:
    """Validate a single-event body; raise InvalidRequest naming the field, or
    ValidationFailed (422) for an event older than `max_event_age_ms`."""
    if event_type not in known_types:
        raise InvalidRequest(f"eventType: {event_type!r} is not configured", field="eventType")
    try:
        usage = _usage_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise InvalidRequest(_describe_decode_error(exc)) from None
    except RecursionError:
        raise InvalidRequest(_TOO_DEEP) from None
    errors = _check(usage, received_ms)
    if errors:
        raise InvalidRequest("; ".join(errors))
    event = _to_new_event(usage, event_type, idempotency_key, received_ms)
    too_old = age_problem(event.ts_ms, received_ms, max_event_age_ms)
    if too_old:
        raise ValidationFailed(
            too_old, field="timestamp", maxEventAge=format_duration(max_event_age_ms or 0)
        )
    return event


def parse_batch(
    body: bytes,
    *,
    known_types: Container[str],
    max_batch_size: int,
    received_ms: int,
    max_event_age_ms: int | None = None,
) -> list[NewEvent]:
    """Validate a batch body: all of it or nothing.

    Raises InvalidRequest (not a non-empty array), BatchTooLarge or
    ValidationFailed (with one ValidationProblem per invalid event).
    """
    try:
        batch = _batch_decoder.decode(body)
    except (msgspec.DecodeError, RecursionError):
        return _reject_batch(body, known_types, max_batch_size, received_ms)
    _check_batch_size(len(batch), max_batch_size)
    problems = []
    for index, item in enumerate(batch):
        errors = _check(item, received_ms, known_types)
        if not errors and item.timestamp is not None:
            too_old = age_problem(_timestamp_ms(item.timestamp), received_ms, max_event_age_ms)
            errors = [too_old] if too_old else []
        if errors:
            problems.append(ValidationProblem(index, errors))
    if problems:
        raise _validation_failed(problems, len(batch))
    return [_to_new_event(item, item.event_type, None, received_ms) for item in batch]


def _reject_batch(
    body: bytes, known_types: Container[str], max_batch_size: int, received_ms: int
) -> list[NewEvent]:
    """The slow path: find and name every problem of a batch that failed to decode."""
    try:
        items = _raw_list_decoder.decode(body)
    except msgspec.ValidationError:
        raise InvalidRequest("the body must be a JSON array of events") from None
    except msgspec.DecodeError as exc:
        raise InvalidRequest(_describe_decode_error(exc)) from None
    except RecursionError:
        raise InvalidRequest(_TOO_DEEP) from None
    _check_batch_size(len(items), max_batch_size)
    problems = []
    for index, raw in enumerate(items):
        try:
            item = _event_decoder.decode(raw)
        except msgspec.DecodeError as exc:
            problems.append(ValidationProblem(index, [_describe_decode_error(exc)]))
            continue
        except RecursionError:
            problems.append(ValidationProblem(index, [_TOO_DEEP]))
            continue
        errors = _check(item, received_ms, known_types)
        if errors:
            problems.append(ValidationProblem(index, errors))
    raise _validation_failed(problems, len(items))


def _check_batch_size(received: int, max_batch_size: int) -> None:
    if received == 0:
        raise InvalidRequest("the batch is empty: send a JSON array of at least one event")
    if received > max_batch_size:
        raise BatchTooLarge(
            f"the batch holds {received} events; at most {max_batch_size} are allowed",
            received=received,
            maxAllowed=max_batch_size,
        )


def _validation_failed(problems: list[ValidationProblem], total: int) -> ValidationFailed:
    return ValidationFailed(
        f"{len(problems)} of {total} events are invalid; nothing was stored",
        validationErrors=problems,
        validCount=total - len(problems),
        invalidCount=len(problems),
    )


def _check(
    usage: UsageIn, received_ms: int, known_types: Container[str] | None = None
) -> list[str]:
    """The rules a schema cannot express; returns readable problems."""
    errors = []
    if isinstance(usage, BatchEventIn) and known_types is not None:
        if not usage.event_type:
            errors.append("eventType: required")
        elif usage.event_type not in known_types:
            errors.append(f"eventType: {usage.event_type!r} is not configured")
    if not math.isfinite(usage.value):
        errors.append("value: must be a finite number")
    if usage.metadata and not _is_object_or_null(usage.metadata):
        errors.append("metadata: must be a JSON object")
    if usage.timestamp is not None:
        error = _check_timestamp(usage.timestamp, received_ms)
        if error:
            errors.append(error)
    return errors


def _check_timestamp(timestamp: int | datetime, received_ms: int) -> str | None:
    ts_ms = _timestamp_ms(timestamp)
    if isinstance(timestamp, int) and ts_ms < MIN_EPOCH_MS:
        return f"timestamp: {timestamp} is too small for epoch milliseconds (seconds sent?)"
    if ts_ms < 0:
        return "timestamp: must not be before 1970-01-01T00:00:00Z"
    if ts_ms > received_ms + MAX_FUTURE_MS:
        return "timestamp: more than 5 minutes in the future"
    return None


def age_problem(ts_ms: int, received_ms: int, max_event_age_ms: int | None) -> str | None:
    """Why an event at `ts_ms` is too old for the `maxEventAge` limit, if it is."""
    if max_event_age_ms is None or ts_ms >= received_ms - max_event_age_ms:
        return None
    return f"timestamp: older than maxEventAge ({format_duration(max_event_age_ms)})"


def timestamp_problem(timestamp: int | datetime, received_ms: int) -> str | None:
    """What is wrong with an event time (too far in the future, before 1970...), if anything."""
    return _check_timestamp(timestamp, received_ms)


def timestamp_ms(timestamp: int | datetime) -> int:
    return _timestamp_ms(timestamp)


def describe_decode_error(exc: msgspec.DecodeError) -> str:
    return _describe_decode_error(exc)


def _timestamp_ms(timestamp: int | datetime) -> int:
    return timestamp if isinstance(timestamp, int) else datetime_to_ms(timestamp)


def _is_object_or_null(raw: msgspec.Raw) -> bool:
    head = bytes(raw).lstrip()[:1]
    return head == b"{" or bytes(raw).strip() == b"null"


def _metadata_bytes(raw: msgspec.Raw) -> bytes | None:
    data = bytes(raw)
    if not data or data.strip() == b"null":
        return None
    return data


def _to_new_event(
    usage: UsageIn, event_type: str, idempotency_key: str | None, received_ms: int
) -> NewEvent:
    ts_ms = received_ms if usage.timestamp is None else _timestamp_ms(usage.timestamp)
    return NewEvent(
        id=usage.id or idempotency_key or new_event_id(received_ms),
        event_type=event_type,
        customer_id=usage.customer_id,
        value=usage.value,
        metadata=_metadata_bytes(usage.metadata),
        ts_ms=ts_ms,
        received_ms=received_ms,
    )


def _describe_decode_error(exc: msgspec.DecodeError) -> str:
    """Turn msgspec's '... - at `$.value`' into 'value: ...'."""
    message = str(exc)
    if " - at `$." in message:
        text, _, path = message.rpartition(" - at `$.")
        return f"{path.rstrip('`')}: {text}"
    if isinstance(exc, msgspec.ValidationError):
        return message
    return f"malformed JSON: {message}"
