"""meterd's configured event types in OpenMeter's Meter shape, and finding one by id or slug.

A meter's `id` is its event type (`api.calls`); its `slug` is the config's `slug`, else
the event type lower-cased with each run of other characters than a-z 0-9 turned into
`_` (`api_calls`). Group-by keys are top-level `data` keys, so `groupBy` is
`{"model": "$.model"}`.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from meterd.config.model import EventTypeConfig
from meterd.config.openmeter import derived_slug
from meterd.openmeter.jsonpath import DEFAULT_VALUE_PROPERTY, path_of
from meterd.timeutil import format_ms

# OpenMeter's names for meterd's ops; an op OpenMeter lacks keeps its own name.
_AGGREGATIONS = {"last": "LATEST", "latest": "LATEST"}


class MeterOut(msgspec.Struct, rename="camel", omit_defaults=True):
    """OpenMeter's Meter, as `GET /api/v1/meters` answers it."""

    id: str
    slug: str
    name: str
    aggregation: str
    event_type: str
    created_at: str
    updated_at: str
    value_property: str | None = None
    group_by: dict[str, str] = msgspec.field(default_factory=dict)


def meter_slug(event_type: str, meter: EventTypeConfig) -> str:
    return meter.slug or derived_slug(event_type)


def aggregation_of(op: str) -> str:
    return _AGGREGATIONS.get(op, op.upper())


def group_keys(meter: EventTypeConfig) -> tuple[str, ...]:
    """The meter's groupBy keys (§6): top-level keys of the event's metadata (`data`)."""
    return meter.group_by


def meter_out(event_type: str, meter: EventTypeConfig, *, loaded_ms: int) -> MeterOut:
    """The meter's OpenMeter shape; `loaded_ms` (when the config was read) dates it."""
    return MeterOut(
        id=event_type,
        slug=meter_slug(event_type, meter),
        name=event_type,
        aggregation=aggregation_of(meter.op),
        event_type=event_type,
        created_at=format_ms(loaded_ms),
        updated_at=format_ms(loaded_ms),
        value_property=None
        if meter.op == "count"
        else meter.value_property or DEFAULT_VALUE_PROPERTY,
        group_by={key: path_of((key,)) for key in group_keys(meter)},
    )


def find_meter(
    events: Mapping[str, EventTypeConfig], id_or_slug: str
) -> tuple[str, EventTypeConfig] | None:
    """The meter whose slug or id (event type) is `id_or_slug`; slugs are looked at first."""
    for event_type, meter in events.items():
        if meter_slug(event_type, meter) == id_or_slug:
            return event_type, meter
    by_id = events.get(id_or_slug)
    return None if by_id is None else (id_or_slug, by_id)
