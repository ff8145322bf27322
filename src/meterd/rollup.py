"""Partial aggregates: what meterd keeps per (customer, event type, 15-minute bucket).

A `Partial` holds count, exact sum, min, max, first and last, so that any of
the seven operations over any period is a fold of the period's buckets.
Partials merge associatively; folding events one at a time or bucket by
bucket gives the same numbers, which is what `meterd rebuild` relies on.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Context, Decimal
from typing import NamedTuple

import msgspec

from meterd.config.model import Op
from meterd.periods import BUCKET_MS

ExactNumber = int | Decimal

# Wide enough that adding any realistic run of values never rounds.
_EXACT = Context(prec=100)


def exact(value: float | int) -> ExactNumber:
    """The decimal the client wrote: 0.1 is taken as 1/10, not as the nearest binary float."""
    if isinstance(value, int):
        return value
    if value.is_integer() and abs(value) < 2**53:
        return int(value)
    return Decimal(repr(value))


def add_exact(a: ExactNumber, b: ExactNumber) -> ExactNumber:
    if isinstance(a, int) and isinstance(b, int):
        return a + b
    return _EXACT.add(a, b)


def parse_exact(text: str) -> ExactNumber:
    """Read back a stored exact sum."""
    number = Decimal(text)
    return int(number) if number == number.to_integral_value() else number


def format_exact(number: ExactNumber) -> str:
    if isinstance(number, int):
        return str(number)
    if number == number.to_integral_value():
        return str(int(number))
    return format(number.normalize(), "f")


def json_number(number: ExactNumber) -> int | float:
    """JSON has no decimals: integers stay exact, the rest become the nearest float."""
    if isinstance(number, int):
        return number
    if number == number.to_integral_value():
        return int(number)
    return float(number)


class Point(NamedTuple):
    """An event as the rollups see it; (ts_ms, seq) orders first/last."""

    ts_ms: int
    seq: int
    value: float


class Partial(msgspec.Struct, frozen=True, gc=False):
    count: int
    sum: ExactNumber
    min: float
    max: float
    first: Point
    last: Point

    def merge(self, other: Partial) -> Partial:
        return Partial(
            count=self.count + other.count,
            sum=add_exact(self.sum, other.sum),
            min=min(self.min, other.min),
            max=max(self.max, other.max),
            first=min(self.first, other.first),
            last=max(self.last, other.last),
        )

    def value(self, op: Op) -> int | float:
        """The reported number for an operation."""
        if op == "sum":
            return json_number(self.sum)
        if op == "avg":
            return json_number(_EXACT.divide(Decimal(self.sum), self.count))
        if op == "count":
            return self.count
        if op == "min":
            return self.min
        if op == "max":
            return self.max
        if op == "first":
            return self.first.value
        return self.last.value


def partial_of(point: Point) -> Partial:
    return Partial(1, exact(point.value), point.value, point.value, point, point)


def merge_all(partials: Iterable[Partial]) -> Partial | None:
    result: Partial | None = None
    for partial in partials:
        result = partial if result is None else result.merge(partial)
    return result


BucketKey = tuple[str, str, int]  # customer_id, event_type, bucket


def bucket_of(ts_ms: int) -> int:
    return ts_ms // BUCKET_MS


def fold(
    events: Iterable[tuple[str, str, Point]], bucket_ms: int = BUCKET_MS
) -> dict[BucketKey, Partial]:
    """Group (customer_id, event_type, point) triples into partials per `bucket_ms`."""
    partials: dict[BucketKey, Partial] = {}
    for customer_id, event_type, point in events:
        key = (customer_id, event_type, point.ts_ms // bucket_ms)
        known = partials.get(key)
        partials[key] = partial_of(point) if known is None else known.merge(partial_of(point))
    return partials
