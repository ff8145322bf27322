"""A serving process collects less often, but still collects cyclic garbage."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from meterd.http.gc_tuning import GEN0_THRESHOLD, tune_for_serving


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def test_cycles_made_while_serving_are_still_collected(restored_gc: None) -> None:
    tune_for_serving()
    assert gc.get_threshold()[0] == GEN0_THRESHOLD
    assert gc.get_freeze_count() > 0
    watched = []
    # Enough cycles to pass the gen0 threshold several times over: nothing calls
    # gc.collect(), the collector must run on its own.
    for _ in range(3 * GEN0_THRESHOLD):
        a, b = Node(), Node()
        a.other, b.other = b, a
        watched.append(weakref.ref(a))
        del a, b
    alive = sum(ref() is not None for ref in watched)
    assert alive < GEN0_THRESHOLD
