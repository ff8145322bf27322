"""The `events` section: each metered event type and how its values are aggregated.

The schema checks every rule of this section today; this module builds the structs.
"""

from __future__ import annotations

from typing import cast

from meterd.config.model import EventTypeConfig, Op


def read_meters(value: object) -> dict[str, EventTypeConfig]:
    """The event types in `value` (the document's "events"), once the schema accepted it."""
    if not isinstance(value, dict):
        return {}
    return {
        name: EventTypeConfig(cast(Op, entry["op"]))
        for name, entry in value.items()
        if isinstance(entry, dict) and isinstance(entry.get("op"), str)
    }
