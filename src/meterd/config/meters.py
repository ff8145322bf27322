"""The `events` section: each meter, how its values are aggregated (DESIGN §6).

The schema checks each key's shape (`op` names, `groupBy` of at most 5 distinct
non-empty strings, `property` a non-empty string, `percentile` in (0, 100]); this
module checks what a schema says badly (which options go with which op, `latest`
as another name for `last`, `customerId` reserved) and builds the structs.
"""

from __future__ import annotations

from meterd.config.model import OPS, EventTypeConfig, Op
from meterd.config.problems import Location, Problems

MAX_GROUP_BY = 5
# Accepted spellings that mean an op under another name.
OP_ALIASES: dict[str, Op] = {"latest": "last"}
# The usage query groups by this itself: it cannot also be a metadata dimension.
RESERVED_DIMENSION = "customerId"


def read_meters(value: object, problems: Problems) -> dict[str, EventTypeConfig]:
    """The meters in `value` (the document's "events"), once the schema checked shapes."""
    if not isinstance(value, dict):
        return {}
    meters = {}
    for name, entry in value.items():
        if isinstance(entry, dict):
            meter = _meter(entry, ("events", name), problems)
            if meter is not None:
                meters[name] = meter
    return meters


def _meter(
    entry: dict[str, object], location: Location, problems: Problems
) -> EventTypeConfig | None:
    raw_op = entry.get("op")
    if not isinstance(raw_op, str):
        return None
    op = OP_ALIASES.get(raw_op) or next((o for o in OPS if o == raw_op), None)
    if op is None:
        return None  # the schema said why
    ok = True
    prop = entry.get("property")
    if op == "unique_count" and prop is None:
        problems.report((*location, "property"), 'missing (required for op "unique_count")')
        ok = False
    elif op != "unique_count" and "property" in entry:
        problems.report((*location, "property"), 'only allowed with op "unique_count"')
        ok = False
    percentile = entry.get("percentile")
    if op == "percentile" and percentile is None:
        problems.report(
            (*location, "percentile"), 'missing (required for op "percentile", e.g. 95)'
        )
        ok = False
    elif op != "percentile" and "percentile" in entry:
        problems.report((*location, "percentile"), 'only allowed with op "percentile"')
        ok = False
    group_by = entry.get("groupBy", [])
    keys: list[str] = []
    if isinstance(group_by, list):
        for index, key in enumerate(group_by):
            if key == RESERVED_DIMENSION:
                problems.report(
                    (*location, "groupBy", index),
                    '"customerId" is always a query dimension; not a metadata key',
                )
                ok = False
            elif isinstance(key, str):
                keys.append(key)
    if not ok:
        return None
    return EventTypeConfig(
        op=op,
        group_by=tuple(keys),
        property_key=prop if isinstance(prop, str) else None,
        percentile=float(percentile) if isinstance(percentile, int | float) else None,
    )
