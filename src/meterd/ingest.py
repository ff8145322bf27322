"""Usage-event input: the request shapes, the fast parse, and what an invalid body gets.

Parsing is one C-speed msgspec decode for the common, valid case (unknown
fields are refused by the decoder itself, at no cost while there are none);
only an invalid body takes the slower path in `explain.py` that names every
problem per event.
"""

from __future__ import annotations

import math
import random
from collections.abc import Container
from datetime import datetime

import msgspec

from meterd.config.model import UnknownFields
from meterd.durations import format_duration
from meterd.errors import (
    BatchTooLarge,
    IdConflict,
    InvalidRequest,
    ValidationFailed,
    conflict_text,
    shown,
)
from meterd.eventrules import MAX_FUTURE_MS as MAX_FUTURE_MS
from meterd.eventrules import (
    MIN_EPOCH_MS,
    Identifier,
    Metadata,
    Problem,
    Timestamp,
    event_type_problem,
    metadata_problem,
    timestamp_ms,
    timestamp_problem,
    value_problem,
)
from meterd.explain import NotAnArray, batch_items, explain_event
from meterd.identifiers import identifier_problem
from meterd.timeutil import datetime_to_ms


class UsageIn(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """Body of `POST /usage/{eventType}`; an `eventType` in it must equal the path's."""

    customer_id: Identifier
    value: float
    metadata: Metadata = msgspec.field(default_factory=msgspec.Raw)
    timestamp: Timestamp | None = None
    id: Identifier | None = None
    event_type: Identifier | None = None


class BatchEventIn(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """One element of the `POST /usagebatch` array."""

    event_type: Identifier
    customer_id: Identifier
    value: float
    metadata: Metadata = msgspec.field(default_factory=msgspec.Raw)
    timestamp: Timestamp | None = None
    id: Identifier | None = None


class _LenientUsageIn(UsageIn, forbid_unknown_fields=False):
    """UsageIn for `"unknownFields": "ignore"`: fields it does not know are skipped."""


class _LenientBatchEventIn(BatchEventIn, forbid_unknown_fields=False):
    """BatchEventIn for `"unknownFields": "ignore"`."""


class NewEvent(msgspec.Struct, array_like=True, gc=False):
    """A validated event on its way to storage.

    `ts_sent` tells whether the client sent the timestamp (else it is the arrival
    time): only a sent timestamp takes part in comparing a reused id's content.
    """

    id: str
    event_type: str
    customer_id: str
    value: float
    metadata: bytes | None
    ts_ms: int
    received_ms: int
    ts_sent: bool = True


class ValidationProblem(msgspec.Struct, omit_defaults=True):
    """The problems of one event of a batch; `field` is set when one field is at fault."""

    index: int
    errors: list[str]
    field: str | None = None


_usage_decoders: dict[str, msgspec.json.Decoder[UsageIn]] = {
    "reject": msgspec.json.Decoder(UsageIn),
    "ignore": msgspec.json.Decoder(_LenientUsageIn),
}
_batch_decoders: dict[str, msgspec.json.Decoder[list[BatchEventIn]]] = {
    "reject": msgspec.json.Decoder(list[BatchEventIn]),
    "ignore": msgspec.json.Decoder(list[_LenientBatchEventIn]),
}


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
    unknown_fields: UnknownFields = "reject",
    max_event_age_ms: int | None = None,
) -> NewEvent:
    """Validate a single-event body; raise InvalidRequest naming the field, or
    ValidationFailed (422) for an event older than `max_event_age_ms`."""
    if event_type not in known_types:
        raise InvalidRequest(f"eventType: {shown(event_type)} is not configured", field="eventType")
    if idempotency_key is not None:
        problem = identifier_problem(idempotency_key)
        if problem is not None:
            raise InvalidRequest(f"Idempotency-Key: {problem}", field="Idempotency-Key")
    try:
        usage = _usage_decoders[unknown_fields].decode(body)
    except (msgspec.DecodeError, RecursionError):
        usage = None
    problems = (
        explain_event(
            body,
            path_type=event_type,
            known_types=known_types,
            unknown_fields=unknown_fields,
            received_ms=received_ms,
        )
        if usage is None
        else _check(usage, usage.event_type, received_ms, known_types, event_type)
    )
    if problems or usage is None:
        raise _invalid(problems or [Problem(None, "the event is not valid")])
    event = _to_new_event(usage, event_type, idempotency_key, received_ms)
    too_old = age_problem(event.ts_ms, received_ms, max_event_age_ms)
    if too_old:
        raise ValidationFailed(
            str(too_old), field="timestamp", maxEventAge=format_duration(max_event_age_ms or 0)
        )
    return event


def parse_batch(
    body: bytes,
    *,
    known_types: Container[str],
    max_batch_size: int,
    received_ms: int,
    unknown_fields: UnknownFields = "reject",
    max_event_age_ms: int | None = None,
) -> list[NewEvent]:
    """Validate a batch body: all of it or nothing.

    Raises InvalidRequest (not a non-empty array), BatchTooLarge or
    ValidationFailed (with one ValidationProblem per invalid event).
    """
    try:
        batch = _batch_decoders[unknown_fields].decode(body)
    except (msgspec.DecodeError, RecursionError):
        return _reject_batch(body, known_types, max_batch_size, received_ms, unknown_fields)
    _check_batch_size(len(batch), max_batch_size)
    plain = _plain_events(batch, known_types, received_ms, max_event_age_ms)
    if plain is not None:
        return plain
    invalid = []
    for index, item in enumerate(batch):
        errors = _check(item, item.event_type, received_ms, known_types, None)
        if not errors and item.timestamp is not None:
            too_old = age_problem(timestamp_ms(item.timestamp), received_ms, max_event_age_ms)
            errors = [too_old] if too_old else []
        if errors:
            invalid.append(_problem_at(index, errors))
    if invalid:
        raise _validation_failed(invalid, len(batch))
    return [_to_new_event(item, item.event_type, None, received_ms) for item in batch]


def _plain_events(
    batch: list[BatchEventIn],
    known_types: Container[str],
    received_ms: int,
    max_event_age_ms: int | None,
) -> list[NewEvent] | None:
    """The batch's events in one pass when every one is plainly valid, else None.

    The common case of the hot path: each timestamp converted once, one object per
    event. None sends the batch through the checks that name every problem (which
    also accept the valid events this shortcut does not recognise, like `null` metadata).
    """
    latest = received_ms + MAX_FUTURE_MS
    oldest = MIN_EPOCH_MS if max_event_age_ms is None else received_ms - max_event_age_ms
    events = []
    for item in batch:
        timestamp = item.timestamp
        if timestamp is None:
            ts_ms = received_ms
        else:
            if isinstance(timestamp, int):
                if timestamp < MIN_EPOCH_MS:
                    return None
                ts_ms = timestamp
            else:
                ts_ms = datetime_to_ms(timestamp)
                if ts_ms < 0:
                    return None
            if ts_ms > latest or ts_ms < oldest:
                return None
        metadata: bytes | None = bytes(item.metadata)
        if not metadata:
            metadata = None
        elif metadata[:1] != b"{":
            return None
        if item.event_type not in known_types or not math.isfinite(item.value):
            return None
        events.append(
            NewEvent(
                item.id or new_event_id(received_ms),
                item.event_type,
                item.customer_id,
                item.value,
                metadata,
                ts_ms,
                received_ms,
                timestamp is not None,
            )
        )
    return events


def conflict_failure(conflict: IdConflict, total: int) -> ValidationFailed:
    """A batch's reused ids, as the 422 that names each refused index."""
    invalid = [
        ValidationProblem(index, [f"id: {shown(id_)} {conflict_text(fields)}"], "id")
        for index, id_, fields in conflict.conflicts
    ]
    return _validation_failed(invalid, total)


def _reject_batch(
    body: bytes,
    known_types: Container[str],
    max_batch_size: int,
    received_ms: int,
    unknown_fields: UnknownFields,
) -> list[NewEvent]:
    """The slow path: find and name every problem of a batch that failed to decode."""
    try:
        items = batch_items(body)
    except NotAnArray:
        raise InvalidRequest("the body must be a JSON array of events") from None
    except ValueError as error:
        raise InvalidRequest(str(error.args[0])) from None
    _check_batch_size(len(items), max_batch_size)
    invalid = []
    for index, raw in enumerate(items):
        errors = explain_event(
            raw,
            path_type=None,
            known_types=known_types,
            unknown_fields=unknown_fields,
            received_ms=received_ms,
        )
        if errors:
            invalid.append(_problem_at(index, errors))
    if not invalid:  # the decoder refused something the explanation did not find
        invalid = [ValidationProblem(0, ["the batch is not valid"])]
    raise _validation_failed(invalid, len(items))


def _check_batch_size(received: int, max_batch_size: int) -> None:
    if received == 0:
        raise InvalidRequest("the batch is empty: send a JSON array of at least one event")
    if received > max_batch_size:
        raise BatchTooLarge(
            f"the batch holds {received} events; at most {max_batch_size} are allowed",
            received=received,
            maxAllowed=max_batch_size,
        )


def _single_field(problems: list[Problem]) -> str | None:
    fields = {problem.field for problem in problems}
    return fields.pop() if len(fields) == 1 else None


def _invalid(problems: list[Problem]) -> InvalidRequest:
    field = _single_field(problems)
    message = "; ".join(str(problem) for problem in problems)
    return InvalidRequest(message) if field is None else InvalidRequest(message, field=field)


def _problem_at(index: int, problems: list[Problem]) -> ValidationProblem:
    return ValidationProblem(index, [str(p) for p in problems], _single_field(problems))


def _validation_failed(invalid: list[ValidationProblem], total: int) -> ValidationFailed:
    return ValidationFailed(
        f"{len(invalid)} of {total} events are invalid; nothing was stored",
        validationErrors=invalid,
        validCount=total - len(invalid),
        invalidCount=len(invalid),
    )


def _check(
    usage: UsageIn | BatchEventIn,
    event_type: str | None,
    received_ms: int,
    known_types: Container[str],
    path_type: str | None,
) -> list[Problem]:
    """The rules a schema cannot express."""
    if _plainly_valid(usage, event_type, received_ms, known_types, path_type):
        return []
    problems = [
        event_type_problem(event_type, known_types=known_types, path_type=path_type),
        value_problem(usage.value),
        metadata_problem(usage.metadata) if usage.metadata else None,
        None if usage.timestamp is None else timestamp_problem(usage.timestamp, received_ms),
    ]
    return [problem for problem in problems if problem is not None]


def _plainly_valid(
    usage: UsageIn | BatchEventIn,
    event_type: str | None,
    received_ms: int,
    known_types: Container[str],
    path_type: str | None,
) -> bool:
    """The common case, checked inline: every event of a batch passes through here."""
    timestamp = usage.timestamp
    return (
        (event_type in known_types if path_type is None else event_type in (None, path_type))
        and math.isfinite(usage.value)
        and (not usage.metadata or bytes(usage.metadata)[:1] == b"{")
        and (
            timestamp is None
            or (
                isinstance(timestamp, int)
                and MIN_EPOCH_MS <= timestamp <= received_ms + MAX_FUTURE_MS
            )
            or (
                isinstance(timestamp, datetime)
                and 0 <= timestamp_ms(timestamp) <= received_ms + MAX_FUTURE_MS
            )
        )
    )


def age_problem(ts_ms: int, received_ms: int, max_event_age_ms: int | None) -> Problem | None:
    """Why an event at `ts_ms` is too old for the `maxEventAge` limit, if it is."""
    if max_event_age_ms is None or ts_ms >= received_ms - max_event_age_ms:
        return None
    return Problem("timestamp", f"older than maxEventAge ({format_duration(max_event_age_ms)})")


def _metadata_bytes(raw: msgspec.Raw) -> bytes | None:
    data = bytes(raw)
    if not data or data.strip() == b"null":
        return None
    return data


def _to_new_event(
    usage: UsageIn | BatchEventIn, event_type: str, idempotency_key: str | None, received_ms: int
) -> NewEvent:
    sent = usage.timestamp is not None
    return NewEvent(
        id=usage.id or idempotency_key or new_event_id(received_ms),
        event_type=event_type,
        customer_id=usage.customer_id,
        value=usage.value,
        metadata=_metadata_bytes(usage.metadata),
        ts_ms=timestamp_ms(usage.timestamp) if usage.timestamp is not None else received_ms,
        received_ms=received_ms,
        ts_sent=sent,
    )
