"""Group values: a meter's `groupBy` dimensions read from an event's metadata."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, NamedTuple

import msgspec

GroupKey = tuple[str | None, ...]

_metadata_decoder = msgspec.json.Decoder(dict[str, Any])


class MeterEvent(NamedTuple):
    """A raw event as meters read it; (ts_ms, seq) is its order."""

    customer_id: str
    ts_ms: int
    seq: int
    value: float
    metadata: str | bytes | None  # the metadata object as JSON text


class WindowTotal(NamedTuple):
    """Rollups folded over one query window (and customer): what sum/count/avg/min/max need."""

    place: int  # the window's index
    customer_id: str | None
    events: int
    total: int | Decimal
    minimum: float
    maximum: float


class GroupTotal(NamedTuple):
    """Raw events folded over one window, customer (or None) and group, in the database."""

    place: int  # the window's index
    customer_id: str | None
    group: GroupKey
    events: int
    total: int | Decimal
    minimum: float
    maximum: float


def metadata_of(raw: str | bytes | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        return _metadata_decoder.decode(raw)
    except msgspec.DecodeError:
        return {}


def as_text(value: object) -> str | None:
    """A metadata value as group text: strings as they are, other JSON as its shortest text.

    A missing key and JSON null are both None. Numbers are normalised (1.0 and 1e0
    are "1") so both backends agree whatever JSON spelling they stored.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return str(int(value))
    return msgspec.json.encode(value).decode()


def group_key(metadata: Mapping[str, Any], group_by: Sequence[str]) -> GroupKey:
    return tuple(as_text(metadata.get(key)) for key in group_by)


def dimensions(group_by: Sequence[str], key: GroupKey) -> dict[str, str | None]:
    return dict(zip(group_by, key, strict=True))


def sort_key(key: GroupKey) -> tuple[tuple[bool, str], ...]:
    """Groups sort by their dimensions in `groupBy` order, null first."""
    return tuple((part is not None, part or "") for part in key)


class GroupFilter(msgspec.Struct, frozen=True):
    """Keeps group values in `values` or, when `negated`, every value not in them.

    A missing key or JSON null (the group None) is in no `values`: a negated filter
    keeps it, a plain one drops it.
    """

    values: frozenset[str]
    negated: bool = False

    def matches(self, value: str | None) -> bool:
        return (value in self.values) != self.negated

    @property
    def keeps_all(self) -> bool:
        return self.negated and not self.values

    @property
    def keeps_none(self) -> bool:
        return not self.negated and not self.values

    def both(self, other: GroupFilter) -> GroupFilter:
        a, b = self, other
        if not a.negated and not b.negated:
            return GroupFilter(a.values & b.values)
        if a.negated and b.negated:
            return GroupFilter(a.values | b.values, negated=True)
        kept, dropped = (b, a) if a.negated else (a, b)
        return GroupFilter(kept.values - dropped.values)

    def either(self, other: GroupFilter) -> GroupFilter:
        a, b = self, other
        if not a.negated and not b.negated:
            return GroupFilter(a.values | b.values)
        if a.negated and b.negated:
            return GroupFilter(a.values & b.values, negated=True)
        negated, plain = (a, b) if a.negated else (b, a)
        return GroupFilter(negated.values - plain.values, negated=True)
