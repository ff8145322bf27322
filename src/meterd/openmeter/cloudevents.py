"""CloudEvents 1.0 in, meterd's NewEvent out: the input rules of POST /api/v1/events.

A CloudEvent maps onto a usage event: `type` is the event type, `subject` the
customer, `time` the timestamp, `data` (an object) the metadata, and the value is
read from `data` at the meter's `valueProperty`. (`source`, `id`) is the event's
identity: the same pair sent twice is one event (see `event_id`).

As on the native routes, the common valid body is one msgspec decode; only an
invalid body takes the slower path that names every problem per event.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

import msgspec

from meterd.config.model import EventTypeConfig
from meterd.durations import format_duration
from meterd.errors import BatchTooLarge, InvalidRequest, UnsupportedMediaType, ValidationFailed
from meterd.explain import malformed
from meterd.ingest import MAX_FUTURE_MS, NewEvent, ValidationProblem, age_problem
from meterd.openmeter.jsonpath import DEFAULT_VALUE_PROPERTY
from meterd.openmeter.values import ValueReader
from meterd.timeutil import datetime_to_ms

SPEC_VERSION = "1.0"
MAX_ID_LENGTH = 256
SINGLE = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
JSON = "application/json"
Shape = Literal["one", "many", "either"]
MEDIA_TYPES: dict[str, Shape] = {SINGLE: "one", BATCH: "many", JSON: "either"}
_TOO_DEEP = "the JSON is nested too deeply"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class CloudEventIn(msgspec.Struct):
    """A CloudEvent in JSON format; extension attributes are accepted and ignored."""

    id: str
    source: str
    specversion: str
    type: str
    subject: str | None = None
    time: datetime | None = None
    datacontenttype: str | None = None
    data: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)


_one_decoder = msgspec.json.Decoder(CloudEventIn)
_attributes_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])
_text = msgspec.json.Decoder(str)
_optional_text = msgspec.json.Decoder(str | None)
REQUIRED = ("id", "source", "specversion", "type")
# The attributes meterd reads: how each is decoded, and what it must be.
ATTRIBUTES: dict[str, tuple[msgspec.json.Decoder[Any], str]] = {
    "id": (_text, "a string"),
    "source": (_text, "a string (a URI-reference such as my-app)"),
    "specversion": (_text, 'the string "1.0"'),
    "type": (_text, "a string (a configured meter's event type)"),
    "subject": (_optional_text, "a string (the customer id)"),
    "time": (
        msgspec.json.Decoder(datetime | None),
        "an RFC 3339 time such as 2025-01-15T10:00:00Z",
    ),
    "datacontenttype": (_optional_text, f"a string such as {JSON!r}"),
}
_many_decoder = msgspec.json.Decoder(list[CloudEventIn])
_raw_list_decoder = msgspec.json.Decoder(list[msgspec.Raw])


class MeterReaders:
    """What ingest needs of the config: the event types, and how each reads its value."""

    def __init__(self, events: Mapping[str, EventTypeConfig]) -> None:
        self.readers: dict[str, ValueReader | None] = {
            event_type: None
            if meter.op == "count"
            else ValueReader(meter.value_property or DEFAULT_VALUE_PROPERTY)
            for event_type, meter in events.items()
        }


def media_shape(content_type: str | None) -> Shape:
    """Which bodies a Content-Type allows; UnsupportedMediaType for any other type."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    shape = MEDIA_TYPES.get(media)
    if shape is None:
        raise UnsupportedMediaType(
            f"Content-Type {media or '(none)'!r} is not accepted: send {SINGLE}, {BATCH} or {JSON}",
            field="Content-Type",
        )
    return shape


def event_id(source: str, id: str) -> str:
    """meterd's event id for the CloudEvent (`source`, `id`): the same pair, the same id.

    `ce:<length of source>:<source><id>` reads back unambiguously, so two pairs never
    share it; a pair too long for meterd's ids becomes `ce#` and the SHA-256 of that text.
    """
    joined = f"ce:{len(source)}:{source}{id}"
    if len(joined) <= MAX_ID_LENGTH:
        return joined
    return "ce#" + hashlib.sha256(joined.encode()).hexdigest()


def parse_cloudevents(
    body: bytes,
    *,
    shape: Shape,
    meters: MeterReaders,
    max_batch_size: int,
    received_ms: int,
    max_event_age_ms: int | None = None,
) -> list[NewEvent]:
    """Validate a body of one event or an array of them: all of it or nothing.

    Raises InvalidRequest (one event, or not JSON of the allowed shape),
    BatchTooLarge or ValidationFailed (a ValidationProblem per invalid event, and
    for events older than `max_event_age_ms`, as on the native routes).
    """
    events = _parse(body, shape, meters, max_batch_size, received_ms)
    if max_event_age_ms is not None:
        one = shape == "one" or (shape == "either" and body.lstrip()[:1] != b"[")
        _refuse_too_old(events, one, received_ms, max_event_age_ms)
    return events


def _refuse_too_old(
    events: list[NewEvent], one: bool, received_ms: int, max_event_age_ms: int
) -> None:
    problems = [
        ValidationProblem(index, [f"time: {problem.text}"], "time")
        for index, event in enumerate(events)
        if (problem := age_problem(event.ts_ms, received_ms, max_event_age_ms)) is not None
    ]
    if not problems:
        return
    if one:
        raise ValidationFailed(
            problems[0].errors[0], field="time", maxEventAge=format_duration(max_event_age_ms)
        )
    raise _validation_failed(problems, len(events))


def _parse(
    body: bytes, shape: Shape, meters: MeterReaders, max_batch_size: int, received_ms: int
) -> list[NewEvent]:
    head = body.lstrip()[:1]
    if shape == "either":
        shape = "many" if head == b"[" else "one"
    if shape == "one":
        if head != b"{":
            raise InvalidRequest("the body must be one CloudEvent, a JSON object")
        return [_parse_one(body, meters, received_ms)]
    if head != b"[":
        raise InvalidRequest("the body must be a JSON array of CloudEvents")
    try:
        batch = _many_decoder.decode(body)
    except (msgspec.DecodeError, RecursionError):
        return _reject_batch(body, meters, max_batch_size, received_ms)
    _check_batch_size(len(batch), max_batch_size)
    events: list[NewEvent] = []
    problems: list[ValidationProblem] = []
    for index, item in enumerate(batch):
        event = _convert(item, meters, received_ms)
        if isinstance(event, NewEvent):
            events.append(event)
        else:
            problems.append(ValidationProblem(index, event))
    if problems:
        raise _validation_failed(problems, len(batch))
    return events


def _parse_one(body: bytes, meters: MeterReaders, received_ms: int) -> NewEvent:
    try:
        item = _one_decoder.decode(body)
    except (msgspec.DecodeError, RecursionError):
        problems = _shape_problems(body)
        raise InvalidRequest("; ".join(problems), errors=problems) from None
    event = _convert(item, meters, received_ms)
    if not isinstance(event, NewEvent):
        raise InvalidRequest("; ".join(event), errors=event)
    return event


def _reject_batch(
    body: bytes, meters: MeterReaders, max_batch_size: int, received_ms: int
) -> list[NewEvent]:
    """The slow path: name every problem of a batch that failed to decode."""
    try:
        items = _raw_list_decoder.decode(body)
    except msgspec.DecodeError as error:
        raise InvalidRequest(malformed(error).text) from None
    except RecursionError:
        raise InvalidRequest(_TOO_DEEP) from None
    _check_batch_size(len(items), max_batch_size)
    problems = []
    for index, raw in enumerate(items):
        try:
            item = _one_decoder.decode(raw)
        except (msgspec.DecodeError, RecursionError):
            problems.append(ValidationProblem(index, _shape_problems(raw)))
            continue
        event = _convert(item, meters, received_ms)
        if not isinstance(event, NewEvent):
            problems.append(ValidationProblem(index, event))
    raise _validation_failed(problems, len(items))


def _convert(item: CloudEventIn, meters: MeterReaders, received_ms: int) -> NewEvent | list[str]:
    """The event, or the readable problems that keep it out."""
    errors = []
    if item.specversion != SPEC_VERSION:
        errors.append(f"specversion: must be {SPEC_VERSION!r}, got {item.specversion[:20]!r}")
    for name, text in (("id", item.id), ("source", item.source)):
        problem = _text_problem(text)
        if problem:
            errors.append(f"{name}: {problem}")
    if item.subject is None:
        errors.append("subject: required (the customer the usage belongs to)")
    else:
        problem = _text_problem(item.subject)
        if problem or len(item.subject) > MAX_ID_LENGTH:
            errors.append(f"subject: {problem or f'at most {MAX_ID_LENGTH} characters'}")
    known = item.type in meters.readers
    if not known:
        errors.append(f"type: {item.type[:64]!r} is not a configured meter's event type")
    content_type = item.datacontenttype
    if content_type is not None and content_type.split(";", 1)[0].strip().lower() != JSON:
        errors.append(f"datacontenttype: must be {JSON!r}")
    ts_ms = received_ms if item.time is None else datetime_to_ms(item.time)
    if item.time is not None:
        problem = _time_problem(ts_ms, received_ms)
        if problem:
            errors.append(problem)
    data = bytes(item.data)
    has_data = bool(data) and data.strip() != b"null"
    if has_data and data.lstrip()[:1] != b"{":
        errors.append("data: must be a JSON object")
        has_data = False
    value = 1.0
    reader = meters.readers.get(item.type) if known else None
    if reader is not None:
        try:
            value = reader.read(data if has_data else b"{}")
        except ValueError as error:
            errors.append(str(error))
    if errors:
        return errors
    assert item.subject is not None
    return NewEvent(
        id=event_id(item.source, item.id),
        event_type=item.type,
        customer_id=item.subject,
        value=value,
        metadata=data if has_data else None,
        ts_ms=ts_ms,
        received_ms=received_ms,
    )


def _text_problem(text: str) -> str | None:
    if not text:
        return "must not be empty"
    # Ids travel in URLs, headers and logs, as on the native routes.
    if _CONTROL.search(text):
        return "must not contain control characters"
    return None


def _time_problem(ts_ms: int, received_ms: int) -> str | None:
    if ts_ms < 0:
        return "time: must not be before 1970-01-01T00:00:00Z"
    if ts_ms > received_ms + MAX_FUTURE_MS:
        return "time: more than 5 minutes in the future"
    return None


def _check_batch_size(received: int, max_batch_size: int) -> None:
    if received == 0:
        raise InvalidRequest("the batch is empty: send a JSON array of at least one CloudEvent")
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


def _shape_problems(raw: bytes | msgspec.Raw) -> list[str]:
    """Every attribute of an event that has the wrong JSON type, in the client's words.

    The slow path after the one-decode fast path failed: each attribute is read on
    its own, so all of them are named, and no decoder wording reaches the client.
    """
    try:
        fields = _attributes_decoder.decode(raw)
    except msgspec.ValidationError:
        return ["each event must be a JSON object (a CloudEvent)"]
    except msgspec.DecodeError as error:
        return [malformed(error).text]
    except RecursionError:
        return [_TOO_DEEP]
    problems = [f"{name}: required" for name in REQUIRED if name not in fields]
    for name, value in fields.items():
        expected = ATTRIBUTES.get(name)
        if expected is None:
            continue
        decoder, wanted = expected
        try:
            decoder.decode(value)
        except (msgspec.DecodeError, RecursionError):
            problems.append(f"{name}: must be {wanted}, got {_json_kind(value)}")
    return problems or ["not a valid CloudEvent"]


def _json_kind(raw: msgspec.Raw) -> str:
    """What a JSON value is; a string is quoted (shortened), as its form was the problem."""
    text = bytes(raw).strip()
    head = text[:1]
    if head == b'"':
        try:
            return repr(_text.decode(text)[:40])
        except msgspec.DecodeError:
            return "a string"
    if head in (b"t", b"f"):
        return "true or false"
    kinds = {b"{": "an object", b"[": "an array", b"n": "null"}
    return kinds.get(head, "a number")
