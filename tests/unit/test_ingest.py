"""The ingest rules, without HTTP or a database."""

from __future__ import annotations

import pytest

from meterd.errors import BatchTooLarge, InvalidRequest, ValidationFailed
from meterd.ingest import NewEvent, new_event_id, parse_batch, parse_usage

NOW = 1_736_935_200_000  # 2025-01-15T10:00:00Z
TYPES = frozenset({"api.calls"})


def single(body: bytes, key: str | None = None) -> NewEvent:
    return parse_usage(
        body, event_type="api.calls", idempotency_key=key, known_types=TYPES, received_ms=NOW
    )


def batch(body: bytes, max_batch_size: int = 10) -> list[NewEvent]:
    return parse_batch(body, known_types=TYPES, max_batch_size=max_batch_size, received_ms=NOW)


def test_defaults_arrival_time_and_a_generated_id() -> None:
    event = single(b'{"customerId": "c", "value": 2}')
    assert event.ts_ms == NOW
    assert event.received_ms == NOW
    assert event.value == 2
    assert event.metadata is None
    assert len(event.id) == 28


def test_body_id_wins_over_idempotency_key() -> None:
    assert single(b'{"customerId": "c", "value": 1}', key="k").id == "k"
    assert single(b'{"customerId": "c", "value": 1, "id": "b"}', key="k").id == "b"


def test_metadata_is_kept_as_the_raw_json_object() -> None:
    event = single(b'{"customerId": "c", "value": 1, "metadata": {"a": [1, {"b": null}]}}')
    assert event.metadata == b'{"a": [1, {"b": null}]}'
    assert single(b'{"customerId": "c", "value": 1, "metadata": null}').metadata is None


def test_generated_ids_are_unique_and_time_ordered() -> None:
    ids = [new_event_id(NOW + i // 100) for i in range(1000)]
    assert len(set(ids)) == 1000
    assert [i[:12] for i in ids] == sorted(i[:12] for i in ids)


def test_timestamp_up_to_five_minutes_ahead_is_accepted() -> None:
    ahead = NOW + 5 * 60 * 1000
    assert (
        single(f'{{"customerId": "c", "value": 1, "timestamp": {ahead}}}'.encode()).ts_ms == ahead
    )
    with pytest.raises(InvalidRequest, match="future"):
        single(f'{{"customerId": "c", "value": 1, "timestamp": {ahead + 1}}}'.encode())


def test_naive_iso_timestamp_is_utc() -> None:
    event = single(b'{"customerId": "c", "value": 1, "timestamp": "2025-01-15T09:00:00"}')
    assert event.ts_ms == NOW - 3_600_000


def test_batch_problems_are_reported_per_index() -> None:
    with pytest.raises(ValidationFailed) as caught:
        batch(b'[{"eventType": "api.calls", "customerId": "c", "value": 1}, {"value": "x"}]')
    assert caught.value.details["validCount"] == 1
    [problem] = caught.value.details["validationErrors"]
    assert problem.index == 1


def test_batch_size_is_checked_before_the_events() -> None:
    with pytest.raises(BatchTooLarge) as caught:
        batch(b"[" + b",".join([b'{"bad": 1}'] * 11) + b"]")
    assert caught.value.details == {"received": 11, "maxAllowed": 10}


@pytest.mark.parametrize("body", [b"[]", b"{}", b"[1", b""])
def test_batch_must_be_a_non_empty_array(body: bytes) -> None:
    with pytest.raises(InvalidRequest):
        batch(body)
