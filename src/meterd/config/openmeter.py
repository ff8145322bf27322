"""The per-meter keys of the OpenMeter-compatible API: `valueProperty` and `slug`.

    "llm.tokens": {"op": "sum", "valueProperty": "$.tokens", "slug": "tokens_total"}

`valueProperty` says where a CloudEvent's `data` holds the value (default `$.value`;
a `count` meter takes none); `slug` is the meter's name under /api/v1 (default: the
event type, lower-cased, each run of other characters than a-z 0-9 turned into `_`).
The schema checks their types and the slug's characters; this module checks the rest.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import msgspec

from meterd.config.model import EventTypeConfig
from meterd.config.problems import Problems, quote
from meterd.openmeter.jsonpath import parse_path

_NOT_SLUG = re.compile(r"[^a-z0-9]+", re.ASCII)


def derived_slug(event_type: str) -> str:
    """`api.calls` -> `api_calls`: what /api/v1 calls a meter that sets no `slug`."""
    return _NOT_SLUG.sub("_", event_type.lower())


def with_api_keys(
    meters: Mapping[str, EventTypeConfig], section: object, problems: Problems
) -> dict[str, EventTypeConfig]:
    """`meters` with each one's `valueProperty` and `slug` from `section` (the "events")."""
    entries = section if isinstance(section, dict) else {}
    result = {}
    for event_type, meter in meters.items():
        entry = entries.get(event_type)
        fields = entry if isinstance(entry, dict) else {}
        result[event_type] = msgspec.structs.replace(
            meter,
            value_property=_value_property(fields, event_type, meter, problems),
            slug=fields.get("slug") if isinstance(fields.get("slug"), str) else None,
        )
    _check_slugs(result, problems)
    return result


def _value_property(
    fields: Mapping[str, object], event_type: str, meter: EventTypeConfig, problems: Problems
) -> str | None:
    value = fields.get("valueProperty")
    if not isinstance(value, str):
        return None
    location = ("events", event_type, "valueProperty")
    if meter.op == "count":
        problems.report(location, "a count meter reads no value; remove valueProperty")
        return None
    try:
        parse_path(value)
    except ValueError as error:
        problems.report(location, str(error))
        return None
    return value


def _check_slugs(meters: Mapping[str, EventTypeConfig], problems: Problems) -> None:
    """Every slug names one meter, and is not another meter's event type."""
    owners: dict[str, str] = {}
    for event_type, meter in meters.items():
        slug = meter.slug or derived_slug(event_type)
        location = ("events", event_type, "slug") if meter.slug else ("events", event_type)
        if slug in owners:
            problems.report(
                location,
                f"slug {quote(slug)} is also the slug of {quote(owners[slug])};"
                ' set "slug" on one of them',
            )
        elif slug in meters and slug != event_type:
            problems.report(location, f"slug {quote(slug)} is the event type of another meter")
        owners.setdefault(slug, event_type)
