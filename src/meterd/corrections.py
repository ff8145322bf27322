"""Corrections: voiding and amending stored events (DESIGN.md section 8).

The service the HTTP API and the CLI call alike. Raw events never change: a void
is a record of its own (when, why, which API key), and an amendment is a void plus
a replacement event, stored in one transaction. Closed records that a correction
touches are recomputed by the closer (`PeriodCloser.revise_touched`).
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import TypeVar

import msgspec

from meterd.apikeys import display_prefix, hash_key
from meterd.errors import InvalidRequest, NotFound, ValidationFailed
from meterd.eventrules import Identifier, Metadata, Timestamp, timestamp_ms, timestamp_problem
from meterd.explain import malformed
from meterd.ingest import NewEvent, age_problem, new_event_id
from meterd.storage.base import Amendment, Correction, KeyIdentity, Store, StoredEvent

MAX_REASON_LENGTH = 1000
# The name recorded for keys given in METERD_API_KEYS, which have no stored record.
ENVIRONMENT_KEY_NAME = "METERD_API_KEYS"

T = TypeVar("T")


class VoidIn(msgspec.Struct):
    """Body of `POST /events/{id}/void`."""

    reason: str | None = None


class AmendIn(msgspec.Struct, rename="camel"):
    """Body of `POST /events/{id}/amend`: the reason and at least one field to change."""

    reason: str | None = None
    value: float | msgspec.UnsetType = msgspec.UNSET
    timestamp: Timestamp | msgspec.UnsetType = msgspec.UNSET
    metadata: Metadata | msgspec.UnsetType = msgspec.UNSET
    customer_id: Identifier | msgspec.UnsetType = msgspec.UNSET


_void_decoder = msgspec.json.Decoder(VoidIn)
_amend_decoder = msgspec.json.Decoder(AmendIn)


async def key_identity(store: Store, key: str) -> KeyIdentity:
    """The name and display prefix of the API key that made a request."""
    record = await store.api_key_by_hash(hash_key(key))
    if record is None:
        return KeyIdentity(ENVIRONMENT_KEY_NAME, display_prefix(key))
    return KeyIdentity(record.name, record.prefix)


async def void_event(
    store: Store, *, event_id: str, body: bytes, key: KeyIdentity, now_ms: int
) -> Correction:
    """Void an event: it leaves every total. Voiding it again answers the first void."""
    reason = _reason(_decode(_void_decoder, body).reason)
    return await store.void_event(event_id=event_id, reason=reason, key=key, now_ms=now_ms)


async def amend_event(
    store: Store,
    *,
    event_id: str,
    body: bytes,
    key: KeyIdentity,
    idempotency_key: str | None,
    now_ms: int,
    max_event_age_ms: int | None = None,
) -> Amendment:
    """Replace an event by a corrected copy: the original is voided, the copy stored,
    in one transaction. A retry with the same `idempotency_key` changes nothing."""
    amend = _decode(_amend_decoder, body)
    reason = _reason(amend.reason)
    detail = await store.get_event(event_id)
    if detail is None:
        raise NotFound(f"no event has id {event_id!r}")
    replacement = replacement_event(
        detail.event, amend, received_ms=now_ms, max_event_age_ms=max_event_age_ms
    )
    return await store.amend_event(
        event_id=event_id,
        replacement=replacement,
        reason=reason,
        key=key,
        idempotency_key=idempotency_key,
        now_ms=now_ms,
    )


def replacement_event(
    original: StoredEvent, amend: AmendIn, *, received_ms: int, max_event_age_ms: int | None
) -> NewEvent:
    """The original with the amended fields; InvalidRequest naming the field if a value
    is bad or nothing would change."""
    value = original.value
    if not isinstance(amend.value, msgspec.UnsetType):
        if not math.isfinite(amend.value):
            raise InvalidRequest("value: must be a finite number", field="value")
        value = amend.value
    ts_ms = original.ts_ms
    if not isinstance(amend.timestamp, msgspec.UnsetType):
        ts_ms = _amended_time(amend.timestamp, received_ms, max_event_age_ms)
    metadata = original.metadata
    if not isinstance(amend.metadata, msgspec.UnsetType):
        metadata = _metadata(amend.metadata)
    customer_id = original.customer_id
    if not isinstance(amend.customer_id, msgspec.UnsetType):
        customer_id = amend.customer_id
    changed = (value, ts_ms, customer_id) != (original.value, original.ts_ms, original.customer_id)
    if not changed and _same_json(metadata, original.metadata):
        raise InvalidRequest(
            "value, timestamp, metadata, customerId: nothing to change; "
            "give at least one that differs from the event",
            field="value",
        )
    return NewEvent(
        id=new_event_id(received_ms),
        event_type=original.event_type,
        customer_id=customer_id,
        value=value,
        metadata=metadata,
        ts_ms=ts_ms,
        received_ms=received_ms,
    )


def _amended_time(timestamp: int | datetime, received_ms: int, max_age_ms: int | None) -> int:
    problem = timestamp_problem(timestamp, received_ms)
    if problem:
        raise InvalidRequest(str(problem), field="timestamp")
    ts_ms = timestamp_ms(timestamp)
    too_old = age_problem(ts_ms, received_ms, max_age_ms)
    if too_old:
        raise ValidationFailed(str(too_old), field="timestamp")
    return ts_ms


def _metadata(raw: msgspec.Raw) -> bytes | None:
    data = bytes(raw).strip()
    if data == b"null":
        return None
    if not data.startswith(b"{"):
        raise InvalidRequest("metadata: must be a JSON object", field="metadata")
    return data


def _same_json(a: bytes | None, b: bytes | None) -> bool:
    if a is None or b is None:
        return a is b
    return bool(msgspec.json.decode(a) == msgspec.json.decode(b))


def _reason(reason: str | None) -> str:
    if reason is None or not reason.strip():
        raise InvalidRequest("reason: required (why is the event corrected?)", field="reason")
    if len(reason) > MAX_REASON_LENGTH:
        raise InvalidRequest(f"reason: at most {MAX_REASON_LENGTH} characters", field="reason")
    return reason.strip()


def _decode(decoder: msgspec.json.Decoder[T], body: bytes) -> T:
    if not body.strip():
        raise InvalidRequest("reason: required (send a JSON object)", field="reason")
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise _wrong_type(exc) from None
    except msgspec.DecodeError as exc:
        raise InvalidRequest(str(malformed(exc))) from None
    except RecursionError:
        raise InvalidRequest("the JSON is nested too deeply") from None


_WRONG_TYPE = {
    "reason": "must be a string",
    "value": "must be a JSON number",
    "timestamp": "must be an ISO-8601 time or epoch milliseconds",
    "metadata": "must be a JSON object",
    "customerId": "must be a non-empty string of at most 256 characters, no control characters",
}


def _wrong_type(error: msgspec.ValidationError) -> InvalidRequest:
    """A field of the wrong type or shape, said in the API's words (no decoder wording)."""
    found = re.search(r"at `\$\.(\w+)`", str(error))
    if found is None or found[1] not in _WRONG_TYPE:
        return InvalidRequest("the body must be a JSON object with the fields of this route")
    field = found[1]
    return InvalidRequest(f"{field}: {_WRONG_TYPE[field]}", field=field)
