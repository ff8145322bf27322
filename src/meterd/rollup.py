"""Partial aggregates: what meterd keeps per (customer, event type, 15-minute bucket).

A `Partial` holds count, exact sum, min, max, first and last, so that any of
the seven operations over any period is a fold of the period's buckets.
Partials merge associatively; folding events one at a time or bucket by
bucket gives the same numbers, which is what `meterd rebuild` relies on.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from decimal import MAX_EMAX, MIN_EMIN, Context, Decimal, Inexact, Overflow
from typing import NamedTuple

import msgspec

from meterd.config.model import Op
from meterd.periods import BUCKET_MS

ExactNumber = int | Decimal

# Every value counts as the shortest decimal that reads back as the same double
# (what the client wrote, up to 17 significant digits). Such a decimal is a whole
# multiple of 10**-324 below 1.8 * 10**308, so a sum of n of them has at most
# 633 + log10(n) digits: with EXACT_DIGITS every sum of fewer than 10**60 values
# is exact. Inexact is trapped, so going past that would fail loudly, never round.
EXACT_DIGITS = 700
_EXACT = Context(prec=EXACT_DIGITS, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[Inexact, Overflow])
# avg is a quotient, rounded anyway: 40 digits are plenty for the nearest double.
_QUOTIENT = Context(prec=40, Emax=MAX_EMAX, Emin=MIN_EMIN)


def exact(value: float | int) -> ExactNumber:
    """The decimal the client wrote: 0.1 is taken as 1/10, not as the nearest binary float."""
    if isinstance(value, int):
        return value
    if value.is_integer() and abs(value) < 2**53:
        return int(value)
    return Decimal(repr(value))


def exact_text(value: float | int) -> str:
    """`exact(value)` as the text a NUMERIC column reads (COPY, SQL literals)."""
    if isinstance(value, int):
        return str(value)
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def add_exact(a: ExactNumber, b: ExactNumber) -> ExactNumber:
    if isinstance(a, int) and isinstance(b, int):
        return a + b
    return _EXACT.add(a, b)


def parse_exact(text: str) -> ExactNumber:
    """Read back a stored exact sum."""
    return exact_decimal(Decimal(text))


def exact_decimal(number: Decimal) -> ExactNumber:
    """A stored decimal as an exact number: integral ones as int, the rest unrounded."""
    if number == number.to_integral_value():
        return int(number)
    return number


def format_exact(number: ExactNumber) -> str:
    """Every digit, no exponent: the text SQLite stores and PostgreSQL reads as NUMERIC."""
    if isinstance(number, int):
        return str(number)
    if number == number.to_integral_value():
        return str(int(number))
    return format(number.normalize(_EXACT), "f")


def json_number(number: ExactNumber) -> int | float:
    """JSON has no decimals: integers stay exact, the rest become the nearest float."""
    if isinstance(number, int):
        return number
    if number == number.to_integral_value():
        return int(number)
    nearest = float(number)
    # Beyond the largest double (a sum of huge values): the nearest integer, still finite.
    return nearest if math.isfinite(nearest) else int(number)


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
            return json_number(_QUOTIENT.divide(Decimal(self.sum), self.count))
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
