"""Synthetic usage events for the benchmarks: values per event type, /usagebatch items."""

from __future__ import annotations

import random
from typing import Any

import msgspec

from meterd.timeutil import format_ms

# The sample config's event types.
EVENT_TYPES = ("api.calls", "storage.bytes", "response.time.ms")
METADATA = b'{"region":"eu-1","plan":"pro"}'


def sample_value(rng: random.Random, event_type: str) -> int | float:
    """A plausible value: call counts, byte sizes, or milliseconds with one decimal."""
    if event_type == "api.calls":
        return rng.randint(1, 20)
    if event_type == "storage.bytes":
        return rng.randint(1_000, 5_000_000_000)
    return round(rng.uniform(2.0, 900.0), 1)


def batch_item(
    event_id: str,
    event_type: str,
    customer: str,
    value: int | float,
    ts_ms: int,
    metadata: bytes | None,
) -> dict[str, Any]:
    """One element of a `POST /usagebatch` body."""
    item: dict[str, Any] = {
        "id": event_id,
        "eventType": event_type,
        "customerId": customer,
        "value": value,
        "timestamp": format_ms(ts_ms),
    }
    if metadata is not None:
        item["metadata"] = msgspec.Raw(metadata)
    return item
