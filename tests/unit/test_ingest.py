"""The ingest rules, without HTTP or a database."""

from __future__ import annotations

import msgspec
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


def strict_batch(body: bytes, unknown_fields: str = "reject") -> list[NewEvent]:
    return parse_batch(
        body,
        known_types=TYPES,
        max_batch_size=10,
        received_ms=NOW,
        unknown_fields=unknown_fields,  # type: ignore[arg-type]
    )


def refusal(body: bytes, **kwargs: object) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        parse_usage(
            body,
            event_type=str(kwargs.pop("event_type", "api.calls")),
            idempotency_key=kwargs.pop("key", None),  # type: ignore[arg-type]
            known_types=TYPES,
            received_ms=NOW,
            **kwargs,  # type: ignore[arg-type]
        )
    return caught.value


def test_an_unknown_field_is_refused_with_a_did_you_mean() -> None:
    error = refusal(b'{"customerId": "c", "value": 1, "timestmp": "2025-01-01T00:00:00Z"}')
    assert error.message == "timestmp: unknown field (did you mean 'timestamp'?)"
    assert error.details == {"field": "timestmp"}


@pytest.mark.parametrize(
    ("sent", "meant"),
    [
        ("customer_id", "customerId"),
        ("CustomerID", "customerId"),
        ("event_type", "eventType"),
        ("meta", "metadata"),
        ("valeu", "value"),
    ],
)
def test_did_you_mean_finds_the_field_meant(sent: str, meant: str) -> None:
    body = f'{{"customerId": "c", "value": 1, "{sent}": 2}}'.encode()
    assert f"did you mean {meant!r}" in refusal(body).message


def test_a_field_like_no_other_lists_the_fields() -> None:
    error = refusal(b'{"customerId": "c", "value": 1, "zzz": 2}')
    assert error.message == (
        "zzz: unknown field; the fields are customerId, value, metadata, timestamp, id, eventType"
    )


def test_every_unknown_field_of_a_batch_event_is_named_per_index() -> None:
    body = (
        b'[{"eventType": "api.calls", "customerId": "c", "value": 1},'
        b' {"eventType": "api.calls", "customerId": "c", "value": 1, "a": 1, "timestmp": 2}]'
    )
    with pytest.raises(ValidationFailed) as caught:
        strict_batch(body)
    [problem] = caught.value.details["validationErrors"]
    assert problem.index == 1
    assert problem.errors == [
        "a: unknown field; the fields are eventType, customerId, value, metadata, timestamp, id",
        "timestmp: unknown field (did you mean 'timestamp'?)",
    ]
    assert problem.field is None  # two fields are at fault


def test_unknown_fields_ignore_keeps_clients_with_extras_working() -> None:
    [event] = strict_batch(
        b'[{"eventType": "api.calls", "customerId": "c", "value": 1, "source": "x"}]', "ignore"
    )
    assert event.customer_id == "c"
    single_event = parse_usage(
        b'{"customerId": "c", "value": 1, "extra": {"deep": [1]}}',
        event_type="api.calls",
        idempotency_key=None,
        known_types=TYPES,
        received_ms=NOW,
        unknown_fields="ignore",
    )
    assert single_event.value == 1
    # Known fields keep their rules.
    assert refusal(b'{"customerId": "", "value": 1, "x": 1}', unknown_fields="ignore").details == {
        "field": "customerId"
    }


def test_a_body_event_type_must_match_the_path() -> None:
    assert single(b'{"customerId": "c", "value": 1, "eventType": "api.calls"}').value == 1
    error = refusal(b'{"customerId": "c", "value": 1, "eventType": "storage.bytes"}')
    assert error.details == {"field": "eventType"}
    assert "'storage.bytes'" in error.message and "'api.calls'" in error.message


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("k" * 257, "at most 256 characters"),
        ("key\n", "control characters"),
        ("key\x85", "control characters"),
        ("\u202ekey", "RIGHT-TO-LEFT OVERRIDE"),
        ("", "must not be empty"),
    ],
)
def test_the_idempotency_key_obeys_the_id_rules(key: str, problem: str) -> None:
    error = refusal(b'{"customerId": "c", "value": 1}', key=key)
    assert error.message.startswith("Idempotency-Key: ")
    assert problem in error.message
    assert error.details == {"field": "Idempotency-Key"}
    assert single(b'{"customerId": "c", "value": 1}', key="k" * 256).id == "k" * 256


@pytest.mark.parametrize(
    ("body", "message", "field"),
    [
        (
            b'{"customerId": "c\\u0085", "value": 1}',
            "customerId: must not contain control",
            "customerId",
        ),
        (b'{"customerId": "c", "value": "12"}', "value: must be a JSON number", "value"),
        (b'{"customerId": "c", "value": true}', "value: must be a JSON number", "value"),
        (
            b'{"customerId": "c", "value": 1' + b"0" * 400 + b"}",
            "value: must be a finite number",
            "value",
        ),
        (b'{"customerId": 7, "value": 1}', "customerId: must be a string", "customerId"),
        (b'{"value": 1}', "customerId: required", "customerId"),
        (b'{"customerId": "c", "value": 1, "id": ""}', "id: must not be empty", "id"),
        (
            b'{"customerId": "c", "value": 1, "timestamp": "yesterday"}',
            "timestamp: must be an ISO-8601 time",
            "timestamp",
        ),
        (
            b'{"customerId": "c", "value": 1, "timestamp": 1.5}',
            "timestamp: must be an ISO-8601 time",
            "timestamp",
        ),
        (
            b'{"customerId": "c", "value": 1, "metadata": [1]}',
            "metadata: must be a JSON object",
            "metadata",
        ),
    ],
)
def test_messages_speak_the_users_words_and_name_the_field(
    body: bytes, message: str, field: str
) -> None:
    error = refusal(body)
    assert error.message.startswith(message)
    assert error.details == {"field": field}
    for internal in ("Expected", "`", "regex", "$.", "\\x", "[^", "msgspec"):
        assert internal not in error.message


def test_several_problems_are_all_named_without_a_single_field() -> None:
    error = refusal(b'{"customerId": "", "value": "1", "timestmp": 1}')
    assert error.message.split("; ") == [
        "timestmp: unknown field (did you mean 'timestamp'?)",
        "customerId: must not be empty",
        "value: must be a JSON number (not a string, a boolean or null)",
    ]
    assert error.details == {}


def test_long_input_is_never_echoed_whole() -> None:
    huge = "x" * 60_000
    error = refusal(b'{"customerId": "c", "value": 1}', event_type=huge)
    assert len(error.message) < 300
    assert "(60000 characters)" in error.message
    body = msgspec.json.encode([{"eventType": huge, "customerId": "c", "value": 1}])
    with pytest.raises(ValidationFailed) as caught:
        strict_batch(body)
    [problem] = caught.value.details["validationErrors"]
    assert len(" ".join(problem.errors)) < 300
    long_field = msgspec.json.encode({"customerId": "c", "value": 1, huge: 1})
    assert len(refusal(long_field).message) < 300


def test_malformed_json_is_said_without_decoder_wording() -> None:
    assert refusal(b'{"customerId": "c", "value": 1,,}').message == (
        "malformed JSON: unexpected character at byte offset 31"
    )
    assert refusal(b'{"customerId": "c"').message == (
        "malformed JSON: the body ends before the JSON does"
    )


@pytest.mark.parametrize("field", ["customerId", "id", "eventType", "timestamp", "metadata"])
@pytest.mark.parametrize("raw", [b"1e999", b"-1E+400", b"1" + b"0" * 400])
def test_numbers_beyond_every_double_in_any_field_are_named(field: str, raw: bytes) -> None:
    body = b'{"customerId": "c", "value": 1, "' + field.encode() + b'": ' + raw + b"}"
    assert refusal(body).details == {"field": field}
