"""What a usage event may hold: its fields' types, and the rules a schema cannot express.

The ingest fast path (`ingest.py`) and the explanation of a refused event
(`explain.py`) both use these, so they agree on what is valid.
"""

from __future__ import annotations

import math
from collections.abc import Container
from datetime import datetime
from typing import Annotated, NamedTuple

import msgspec

from meterd.errors import shown
from meterd.identifiers import MAX_LENGTH, PATTERN
from meterd.timeutil import datetime_to_ms

MAX_FUTURE_MS = 5 * 60 * 1000
# Epoch values below this (1973-03-03 in ms) are almost surely seconds sent by mistake.
MIN_EPOCH_MS = 100_000_000_000

Identifier = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_LENGTH, pattern=PATTERN)]
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

# The body fields, in the client's words.
SINGLE_FIELDS = ("customerId", "value", "metadata", "timestamp", "id", "eventType")
BATCH_FIELDS = ("eventType", "customerId", "value", "metadata", "timestamp", "id")


class Problem(NamedTuple):
    """One thing wrong with an event; `field` is None when no single field is at fault."""

    field: str | None
    text: str

    def __str__(self) -> str:
        return self.text if self.field is None else f"{self.field}: {self.text}"


def value_problem(value: float) -> Problem | None:
    if math.isfinite(value):
        return None
    return Problem("value", "must be a finite number")


def metadata_problem(raw: msgspec.Raw) -> Problem | None:
    data = bytes(raw).strip()
    if not data or data[:1] == b"{" or data == b"null":
        return None
    return Problem("metadata", "must be a JSON object")


def timestamp_ms(timestamp: int | datetime) -> int:
    return timestamp if isinstance(timestamp, int) else datetime_to_ms(timestamp)


def timestamp_problem(timestamp: int | datetime, received_ms: int) -> Problem | None:
    ts_ms = timestamp_ms(timestamp)
    if isinstance(timestamp, int) and ts_ms < MIN_EPOCH_MS:
        return Problem(
            "timestamp", f"{timestamp} is too small for epoch milliseconds (seconds sent?)"
        )
    if ts_ms < 0:
        return Problem("timestamp", "must not be before 1970-01-01T00:00:00Z")
    if ts_ms > received_ms + MAX_FUTURE_MS:
        return Problem("timestamp", "more than 5 minutes in the future")
    return None


def event_type_problem(
    event_type: str | None, *, known_types: Container[str], path_type: str | None
) -> Problem | None:
    """The body's eventType: required in a batch, equal to the path's on the single route."""
    if path_type is not None:
        if event_type is None or event_type == path_type:
            return None
        return Problem(
            "eventType",
            f"the body says {shown(event_type)} but the path says {shown(path_type)}; "
            "leave it out or send the same",
        )
    if event_type is None:
        return Problem("eventType", "required")
    if event_type not in known_types:
        return Problem("eventType", f"{shown(event_type)} is not configured")
    return None
