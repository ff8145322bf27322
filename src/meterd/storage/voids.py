"""The rules both backends apply to the event_voids table (DESIGN.md section 8): its
rows as values and back, and the conflicts a correction can meet."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from meterd.errors import Conflict
from meterd.storage.base import Correction, KeyIdentity


def void_values(correction: Correction, idempotency_key: str | None) -> tuple[Any, ...]:
    """The parameters of `insert_void`."""
    return (
        correction.event_id,
        correction.voided_ms,
        correction.reason,
        correction.key.name,
        correction.key.prefix,
        correction.replaced_by,
        idempotency_key,
    )


def correction_from_row(row: Sequence[Any]) -> Correction:
    """A correction from (event_id, voided_at, reason, key_name, key_prefix, replaced_by)."""
    event_id, voided_ms, reason, key_name, key_prefix, replaced_by = row
    return Correction(event_id, voided_ms, reason, KeyIdentity(key_name, key_prefix), replaced_by)


def void_again(event_id: str, earlier: Correction) -> Correction:
    """Voiding an event voided before answers the first void; one that was amended is a
    conflict (its replacement is what to void)."""
    if earlier.replaced_by is None:
        return earlier
    raise Conflict(
        f"event {event_id!r} was amended by {earlier.replaced_by!r}; void that one instead",
        amendedBy=earlier.replaced_by,
    )


def voided_conflict(event_id: str) -> Conflict:
    return Conflict(f"event {event_id!r} is voided; it cannot be amended", status="voided")


def repeated_amendment(event_id: str, earlier: Correction) -> str:
    """The replacement's id when `earlier`, found by the same Idempotency-Key, amended
    `event_id`; a conflict when the key was used for another event."""
    if earlier.event_id != event_id or earlier.replaced_by is None:
        raise Conflict(
            f"Idempotency-Key: already used to amend event {earlier.event_id!r}",
            field="Idempotency-Key",
        )
    return earlier.replaced_by
