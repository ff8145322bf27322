"""Exact sums for every finite double, at any magnitude, however the partials are merged."""

from __future__ import annotations

import random
import struct
import sys
from decimal import Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from meterd.rollup import Partial, Point, format_exact, json_number, parse_exact, partial_of

EXTREMES = [
    1e300,
    1e-300,
    -1e300,
    5e-324,
    -5e-324,
    sys.float_info.max,
    -sys.float_info.max,
    sys.float_info.min,
    0.1,
    2.0**53 + 2,
    1e22,
    123.456e-200,
]


def total(values: list[float]) -> Partial:
    partials = [partial_of(Point(0, i, v)) for i, v in enumerate(values)]
    result = partials[0]
    for partial in partials[1:]:
        result = result.merge(partial)
    return result


def truth(values: list[float]) -> Fraction:
    """Each value as the decimal it is written as (what meterd sums), added exactly."""
    return sum((Fraction(Decimal(repr(v))) for v in values), Fraction(0))


def test_small_terms_survive_huge_ones() -> None:
    assert total([1e300, 1e-300, -1e300]).value("sum") == 1e-300
    assert total([sys.float_info.max, 5e-324, -sys.float_info.max]).value("sum") == 5e-324
    assert total([0.1] * 10).value("sum") == 1


def test_stored_text_round_trips_every_digit() -> None:
    partial = total([1e300, 1e-300, 0.1])
    text = format_exact(partial.sum)
    assert len(text) > 600
    assert Fraction(parse_exact(text)) == truth([1e300, 1e-300, 0.1])


def _random_double(rng: random.Random) -> float:
    while True:
        value: float = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if value == value and abs(value) != float("inf"):
            return value


def test_random_doubles_of_every_magnitude_sum_exactly() -> None:
    rng = random.Random(17)
    for _ in range(200):
        values = [_random_double(rng) for _ in range(rng.randint(1, 30))] + EXTREMES[
            : rng.randint(0, 12)
        ]
        rng.shuffle(values)
        partial = total(values)
        assert Fraction(partial.sum) == truth(values)
        assert Fraction(parse_exact(format_exact(partial.sum))) == truth(values)
        exact_sum = truth(values)
        if abs(exact_sum) < sys.float_info.max:
            assert json_number(partial.sum) == float(exact_sum)
        else:  # beyond every double: still a finite JSON number, the nearest integer
            assert abs(Fraction(json_number(partial.sum)) - exact_sum) < 1


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=40))
def test_any_merge_order_gives_the_same_exact_sum(values: list[float]) -> None:
    forward = total(values).sum
    backward = total(values[::-1]).sum
    assert Fraction(forward) == Fraction(backward) == truth(values)
