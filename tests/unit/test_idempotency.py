"""Reused ids without a database: how requests in one commit are settled."""

from __future__ import annotations

from decimal import Decimal

from meterd.errors import IdConflict
from meterd.idempotency import StoredContent, differences, resolve
from meterd.ingest import NewEvent

NOW = 1_736_935_200_000


def ev(id_: str, value: float = 1, *, ts: int | None = None, meta: bytes | None = None) -> NewEvent:
    return NewEvent(id_, "api.calls", "c", value, meta, ts or NOW, NOW, ts is not None)


def content(value: float | Decimal = 1, ts: int = NOW, meta: str | None = None) -> StoredContent:
    return StoredContent("api.calls", "c", value, meta, ts)


def test_requests_are_settled_as_if_run_one_after_another() -> None:
    jobs = [[ev("x", 1)], [ev("x", 2), ev("y", 2)], [ev("y", 3)], [ev("x", 1)]]
    outcomes = resolve(jobs, {})
    assert outcomes[0] == [True]
    assert isinstance(outcomes[1], IdConflict)
    assert outcomes[1].conflicts == [(0, "x", ["value"])]
    # y was only claimed by the refused request: the next one stores it.
    assert outcomes[2] == [True]
    assert outcomes[3] == [False]


def test_stored_ids_decide_first() -> None:
    outcomes = resolve([[ev("x", 2)], [ev("x", 1), ev("x", 1)]], {"x": content(1)})
    assert isinstance(outcomes[0], IdConflict)
    assert outcomes[1] == [False, False]


def test_numbers_compare_exactly_whatever_their_stored_form() -> None:
    assert differences(ev("x", 0.1), content(Decimal("0.1"))) == []
    assert differences(ev("x", 1.0), content(1)) == []
    assert differences(ev("x", 1e20), content(Decimal("100000000000000000000"))) == []
    assert differences(ev("x", 0.30000000000000004), content(Decimal("0.3"))) == ["value"]


def test_metadata_compares_as_json() -> None:
    assert differences(ev("x", meta=b'{"a": 1, "b": 2}'), content(meta='{"b":2,"a":1.0}')) == []
    assert differences(ev("x", meta=None), content(meta="{}")) == []
    assert differences(ev("x", meta=b'{"a": 1}'), content(meta='{"a": 2}')) == ["metadata"]


def test_only_a_sent_timestamp_is_compared() -> None:
    assert differences(ev("x"), content(ts=NOW - 60_000)) == []
    assert differences(ev("x", ts=NOW - 1), content(ts=NOW)) == ["timestamp"]
    assert differences(ev("x", ts=NOW), content(ts=NOW)) == []
