"""Reused ids: a retry of the same event is a duplicate, a different event is a conflict.

An id (or Idempotency-Key) names one event for good, the way Stripe treats an
idempotency key: sending the same content again is acknowledged as a
duplicate; sending other content under it is refused, naming what differs.

Content is the event type, customer, value, metadata, and the timestamp *when
the retry sends one*. A retry without a timestamp matches the stored event
whatever its time: the client let meterd pick the arrival time the first
time, and a retry arrives later, so comparing arrival times would turn every
honest retry into a conflict. A retry that sends a timestamp must match the
stored time to the millisecond (also when the stored time was an arrival time).
Numbers compare exactly (1 and 1.0 are the same; 0.1 and 0.10000000000000002 are
not); metadata compares as JSON (key order and spacing do not matter; absent,
null and {} are the same).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, NamedTuple

import msgspec

from meterd.errors import IdConflict
from meterd.ingest import NewEvent
from meterd.rollup import exact


class StoredContent(NamedTuple):
    """What a stored id is bound to, as a backend reads it back."""

    event_type: str
    customer_id: str
    value: float | int | Decimal
    metadata: bytes | str | None
    ts_ms: int


def content_of(event: NewEvent) -> StoredContent:
    return StoredContent(
        event.event_type, event.customer_id, event.value, event.metadata, event.ts_ms
    )


def differences(event: NewEvent, stored: StoredContent) -> list[str]:
    """The fields, in the client's words, in which `event` differs from the stored one."""
    fields = []
    if event.event_type != stored.event_type:
        fields.append("eventType")
    if event.customer_id != stored.customer_id:
        fields.append("customerId")
    if _exact(event.value) != _exact(stored.value):
        fields.append("value")
    if not _same_metadata(event.metadata, stored.metadata):
        fields.append("metadata")
    if event.ts_sent and event.ts_ms != stored.ts_ms:
        fields.append("timestamp")
    return fields


Outcome = list[bool] | IdConflict


def resolve(
    jobs: Sequence[Sequence[NewEvent]], stored: Mapping[str, StoredContent]
) -> list[Outcome]:
    """What happens to each job (one request's events) if run one after another.

    `stored` holds the content of ids already in the database (it may hold more).
    A job's outcome is, per event, True (to be stored) or False (a duplicate), or
    IdConflict when any of its events reuses an id with other content; such a job
    stores nothing, and its events do not count as stored for later jobs.
    """
    if not stored and _distinct_ids(jobs):
        return [[True] * len(job) for job in jobs]  # the usual case: nothing seen before
    known: dict[str, StoredContent] = dict(stored)
    outcomes: list[Outcome] = []
    for job in jobs:
        fresh: dict[str, StoredContent] = {}
        flags: list[bool] = []
        conflicts: list[tuple[int, str, list[str]]] = []
        for index, event in enumerate(job):
            earlier = fresh.get(event.id) or known.get(event.id)
            if earlier is None:
                fresh[event.id] = content_of(event)
                flags.append(True)
                continue
            differ = differences(event, earlier)
            if differ:
                conflicts.append((index, event.id, differ))
            flags.append(False)
        if conflicts:
            outcomes.append(IdConflict(conflicts))
        else:
            known.update(fresh)
            outcomes.append(flags)
    return outcomes


def _distinct_ids(jobs: Sequence[Sequence[NewEvent]]) -> bool:
    ids = {event.id for job in jobs for event in job}
    return len(ids) == sum(len(job) for job in jobs)


def _exact(value: float | int | Decimal) -> int | Decimal:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else value
    return exact(value)


def _same_metadata(a: bytes | str | None, b: bytes | str | None) -> bool:
    if isinstance(a, str):
        a = a.encode()
    if isinstance(b, str):
        b = b.encode()
    if a == b:  # the usual retry: byte for byte what was sent before
        return True
    try:
        return bool(_json(a) == _json(b))
    except RecursionError:
        return False


def _json(data: bytes | str | None) -> Any:
    value = None if data is None else msgspec.json.decode(data)
    return {} if value is None else value
