"""Fuzzing `meterd serve` over real HTTP: bad input never yields a 500 (DESIGN §2).

Two servers, each on its own temporary SQLite file:

- schemathesis generates requests for every operation of the served /openapi.json
  and checks that no answer is a 5xx and that each answer's status code, content type
  and body are the documented ones;
- hypothesis sends the ingest routes arbitrary JSON, valid events with one field
  mutated, random bytes and truncated JSON. Every answer must be 201 or a 4xx JSON
  error; a 4xx stores nothing; a 201 stores exactly the events it acknowledges (as
  read from the database file), and GET /events then lists each of them.

Examples are derandomized: CI sends the same requests on every run.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

import httpx
import hypothesis.core
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.vendor import pretty
from schemathesis import GenerationMode, checks
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Err, Ok

from meterd.http.docs import OPENMETER_OPERATIONS, OPERATIONS
from meterd.timeutil import now_ms
from tests.acceptance.fuzz_support import (
    EVENT_TYPES,
    DrainedMeterd,
    Missing,
    Mutation,
    RawJSON,
    StoredEvents,
    StoredRow,
    any_body,
    encode,
    event_mutations,
    event_type_mutations,
    expected_value,
    mutated,
    optional_fields,
    stored_time_range,
    valid_event,
)

pytestmark = pytest.mark.slow

KEY = "mk_fuzz"
AUTH = {"x-apikey": KEY}
MAX_BATCH_SIZE = 1000  # the built-in sample config's default
MAX_BODY_BYTES = 5_000_000  # `meterd serve --max-body-bytes` default


def fuzz(max_examples: int) -> settings:
    """The same examples on every run; no example database, no explain phase."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def restore_hypothesis_printer() -> None:
    """Undo schemathesis' patch of Hypothesis that prints every falsifying argument blank.

    Loading schemathesis' pytest plugin, or building one of its strategies, replaces
    Hypothesis' RepresentationPrinter, for the whole process, with one that prints
    nothing (a speed-up for its CLI): "Failing test case: test(x=,)".
    """
    # setattr: the name is not among hypothesis.core's exports, so mypy refuses `=`.
    setattr(hypothesis.core, "RepresentationPrinter", pretty.RepresentationPrinter)  # noqa: B010


@pytest.fixture(autouse=True)
def readable_hypothesis_reports() -> None:
    restore_hypothesis_printer()


@contextmanager
def running_meterd(workdir: Path) -> Iterator[DrainedMeterd]:
    """`meterd serve` with the built-in sample config and a fresh SQLite file in `workdir`."""
    server = DrainedMeterd(
        workdir,
        env={
            "METERD_API_KEYS": KEY,
            "METERD_DATABASE_URL": f"sqlite:///{workdir / 'meterd.db'}",
            "METERD_CONFIG": "",
        },
    )
    with server:
        yield server


# --- schemathesis: every operation of the served document -----------------------------

OPERATION_LABELS = [f"{op.method.upper()} {op.path}" for op in OPERATIONS + OPENMETER_OPERATIONS]
FUZZED_LABELS = OPERATION_LABELS
# Path parameters that get past the "no such thing" answer, which generated ones rarely do.
KNOWN_PATH_VALUES = {
    "eventType": "api.calls",
    "customerId": "sub_ABC123",
    "id": "sub_ABC123_daily_20250115",
    "idOrSlug": "api_calls",
    "meterSlug": "api_calls",
}
SCHEMA_CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


@dataclass
class SchemaServer:
    schema: schemathesis.BaseSchema  # loaded from the server's own /openapi.json
    server: DrainedMeterd


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SchemaServer]:
    # schemathesis' lazy `from_fixture` loader fails on pytest 9.2 ("'Function' object
    # has no attribute '_nodeid'"), so the operations are parametrized here and each
    # test runs its own Hypothesis loop over the live document's strategy.
    with running_meterd(tmp_path_factory.mktemp("schemathesis")) as server:
        config = schemathesis.Config.from_dict({"generation": {"with-security-parameters": False}})
        url = server.url + "/openapi.json"
        yield SchemaServer(schemathesis.openapi.from_url(url, config=config, timeout=10), server)


def test_served_document_has_exactly_the_fuzzed_operations(served: SchemaServer) -> None:
    results = list(served.schema.get_all_operations())
    assert [r.err() for r in results if isinstance(r, Err)] == []
    assert {r.ok().label for r in results if isinstance(r, Ok)} == set(OPERATION_LABELS)


Operation = schemathesis.APIOperation[Any, Any, Any, Any]
Case = schemathesis.Case[Operation]


def cases_for(operation: Operation) -> st.SearchStrategy[Case]:
    """Valid and invalid requests, and valid ones whose path parameters name real things."""
    strategies = [operation.as_strategy(generation_mode=GenerationMode.POSITIVE)]
    if any(True for _ in operation.iter_parameters()) or operation.body:
        strategies.append(operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))
    names = operation.path_parameters
    known = {name: value for name, value in KNOWN_PATH_VALUES.items() if name in names}
    if known:
        strategies.append(operation.as_strategy(path_parameters=known))
    return st.one_of(strategies)


@pytest.mark.parametrize("label", FUZZED_LABELS)
def test_operation_answers_as_documented(served: SchemaServer, label: str) -> None:
    operation = served.schema.find_operation_by_label(label)
    assert operation is not None, f"{label} is not in the served /openapi.json"
    cases = cases_for(operation)
    restore_hypothesis_printer()

    @fuzz(50)
    @given(case=cases)
    def answers_as_documented(case: Case) -> None:
        mark = served.server.log_mark()
        response = case.call(headers=AUTH, timeout=10)
        try:
            case.validate_response(response, checks=SCHEMA_CHECKS, headers=AUTH)
        except FailureGroup as failure:  # a BaseExceptionGroup, not an Exception
            if response.status_code >= 500:
                failure.add_note("server log:\n" + served.server.logged_error_since(mark))
            raise

    answers_as_documented()


# --- the ingest routes ----------------------------------------------------------------


@dataclass
class IngestServer:
    client: httpx.Client
    stored: StoredEvents
    server: DrainedMeterd

    def send(self, method: str, path: str, **kwargs: Any) -> tuple[httpx.Response, str]:
        """The response, and a description of the exchange for failure messages."""
        mark = self.server.log_mark()
        response = self.client.request(method, path, **kwargs)
        sent = kwargs.get("content") or kwargs.get("params") or ""
        context = f"{method} {path} {shown(sent)} -> {response.status_code} {response.text[:500]}"
        if response.status_code >= 500:
            context += "\nserver log:\n" + self.server.logged_error_since(mark)
        return response, context


def shown(sent: object) -> str:
    text = repr(sent)
    return text if len(text) <= 300 else text[:300] + "..."


class Answer(NamedTuple):
    status: int
    body: dict[str, Any]
    rows: list[StoredRow]  # the events the request committed


@pytest.fixture(scope="module")
def ingest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IngestServer]:
    workdir = tmp_path_factory.mktemp("ingest")
    with (
        running_meterd(workdir) as server,
        # A fresh connection per request: after a 500 uvicorn closes the connection,
        # and reusing it would fail the next, innocent request.
        httpx.Client(
            base_url=server.url,
            headers=AUTH,
            timeout=30,
            limits=httpx.Limits(max_keepalive_connections=0),
        ) as client,
    ):
        stored = StoredEvents(workdir / "meterd.db")
        try:
            yield IngestServer(client, stored, server)
        finally:
            stored.close()


def post(ingest: IngestServer, path: str, body: bytes) -> Answer:
    """POST `body` and check what every answer must be: 201, or a 4xx that stored nothing."""
    response, context = ingest.send(
        "POST", path, content=body, headers={"content-type": "application/json"}
    )
    if hypothesis.currently_in_test_context():  # --hypothesis-show-statistics counts these
        hypothesis.event(
            f"{'batch' if path == '/usagebatch' else 'single'} -> {response.status_code}"
        )
    assert response.status_code == 201 or 400 <= response.status_code < 500, context
    assert response.headers.get("content-type", "").startswith("application/json"), context
    decoded = response.json()
    assert isinstance(decoded, dict), context
    rows = ingest.stored.new_rows()
    if response.status_code != 201:
        assert isinstance(decoded.get("error"), str) and decoded["error"], context
        assert rows == [], f"a refused request stored {rows}: {context}"
    return Answer(response.status_code, decoded, rows)


def assert_listed(ingest: IngestServer, rows: list[StoredRow]) -> None:
    """GET /events lists every committed event."""
    for row in rows:
        window = {"customerId": row.customer_id, "from": str(row.ts_ms), "to": str(row.ts_ms)}
        response, context = ingest.send("GET", "/events", params={**window, "limit": "1000"})
        assert response.status_code == 200, f"an acknowledged event cannot be listed: {context}"
        [item] = [item for item in response.json() if item["_id"] == row.id]
        assert (item["eventType"], item["value"]) == (row.event_type, row.value), context


def check_single_captured(answer: Answer, event_type: str, sent_id: object) -> None:
    body = answer.body
    assert body["message"] == "Event captured", body
    assert body["eventType"] == event_type, body
    assert isinstance(body["customerId"], str) and isinstance(body["id"], str), body
    assert isinstance(body["duplicate"], bool), body
    if isinstance(sent_id, str):
        assert body["id"] == sent_id, body
    if body["duplicate"]:
        assert answer.rows == [], f"a duplicate was stored again: {answer.rows}"
    else:
        stored = [(row.id, row.event_type, row.customer_id) for row in answer.rows]
        assert stored == [(body["id"], event_type, body["customerId"])], body


def check_batch_captured(answer: Answer, received: int) -> None:
    body = answer.body
    assert body["message"] == "Events captured", body
    assert body["count"] == received, body
    assert body["stored"] + body["duplicates"] == received, body
    assert len(answer.rows) == body["stored"], f"{body} but {len(answer.rows)} events committed"


def check_refused_batch(answer: Answer, items: object) -> None:
    body = answer.body
    if answer.status == 422:
        problems = body["validationErrors"]
        assert problems and body["invalidCount"] == len(problems), body
        assert all(isinstance(p["index"], int) and p["errors"] for p in problems), body
        if isinstance(items, list):
            assert body["validCount"] + body["invalidCount"] == len(items), body
    if answer.status == 413 and isinstance(items, list):
        assert (body["received"], body["maxAllowed"]) == (len(items), MAX_BATCH_SIZE), body


def check_time(row: StoredRow, timestamp: object, arrival: tuple[int, int]) -> None:
    allowed = stored_time_range(timestamp, arrival)
    if allowed is not None:
        low, high = allowed
        assert low <= row.ts_ms <= high, f"timestamp {timestamp!r} stored as {row.ts_ms}"


# No "/" in the type: the server decodes %2F, so that would fuzz routing, not ingest
# (a trailing slash gets Starlette's 307 redirect).
event_type_names = st.text(
    st.characters(exclude_characters="/", exclude_categories=["Cs"]), min_size=1, max_size=20
)
event_type_routes = (st.sampled_from(EVENT_TYPES) | event_type_names).map(
    lambda name: (name, "/usage/" + quote(name, safe=""))
)


@fuzz(300)
@given(route=event_type_routes | st.just(("", "/usagebatch")), value=any_body)
def test_any_json_body_is_stored_or_refused_with_a_json_error(
    ingest: IngestServer, route: tuple[str, str], value: object
) -> None:
    event_type, path = route
    answer = post(ingest, path, encode(value))
    if path == "/usagebatch":
        if answer.status == 201:
            assert isinstance(value, list)
            check_batch_captured(answer, len(value))
        else:
            check_refused_batch(answer, value)
    elif answer.status == 201:
        sent_id = value.get("id") if isinstance(value, dict) else None
        check_single_captured(answer, event_type, sent_id)
    assert_listed(ingest, answer.rows)


SINGLE_STATUSES = {
    "accept": {201},
    "invalid": {400},
    "malformed": {400},
    "either": {201, 400},
    "deep": {201, 400},
}
BATCH_STATUSES = {
    "accept": {201},
    "invalid": {422},
    "malformed": {400},
    "either": {201, 422},
    "deep": {201, 400, 422},
}


@fuzz(400)
@given(optional=optional_fields, mutation=event_mutations)
def test_event_with_one_field_mutated_is_stored_exactly_or_refused(
    ingest: IngestServer, optional: list[str], mutation: Mutation
) -> None:
    event = mutated(valid_event(optional=optional), mutation)
    sent_id = event.get("id")
    duplicate = isinstance(sent_id, str) and bool(ingest.stored.existing_ids([sent_id]))
    start = now_ms()
    answer = post(ingest, "/usage/api.calls", encode(event))
    arrival = (start, now_ms())
    # Every event has its own customer: an id already stored is reused for other content.
    reused = {409} if duplicate else set()
    assert answer.status in SINGLE_STATUSES[mutation.expect] | reused, f"{mutation}: {answer}"
    if answer.status == 409:
        assert answer.body["id"] == sent_id and answer.rows == [], answer
    if answer.status != 201:
        return
    check_single_captured(answer, "api.calls", sent_id)
    assert answer.body["duplicate"] is duplicate, answer
    for row in answer.rows:
        assert row.customer_id == event["customerId"]
        assert row.value == expected_value(event["value"])
        check_time(row, event.get("timestamp", Missing.FIELD), arrival)
    assert_listed(ingest, answer.rows)


@fuzz(300)
@given(
    size=st.integers(min_value=1, max_value=4),
    position=st.integers(min_value=0, max_value=3),
    optional=optional_fields,
    mutation=event_mutations | event_type_mutations,
)
def test_batch_with_one_event_mutated_is_stored_whole_or_not_at_all(
    ingest: IngestServer, size: int, position: int, optional: list[str], mutation: Mutation
) -> None:
    events = [
        valid_event(event_type=EVENT_TYPES[i % len(EVENT_TYPES)], optional=optional)
        for i in range(size)
    ]
    index = position % size
    events[index] = mutated(events[index], mutation)
    ids = [e.get("id") for e in events]
    existing = ingest.stored.existing_ids(i for i in ids if isinstance(i, str))
    start = now_ms()
    answer = post(ingest, "/usagebatch", encode(events))
    arrival = (start, now_ms())
    # Every event has its own customer: an id already stored is reused for other content.
    reused = {422} if existing else set()
    assert answer.status in BATCH_STATUSES[mutation.expect] | reused, f"{mutation}: {answer}"
    if answer.status == 422:
        assert [p["index"] for p in answer.body["validationErrors"]] == [index], answer
        assert (answer.body["validCount"], answer.body["invalidCount"]) == (size - 1, 1), answer
    if answer.status != 201:
        return
    check_batch_captured(answer, size)
    # A duplicate (of a stored event, or of an earlier one in the batch) is acknowledged
    # and not stored; every other event is stored.
    expected = []
    seen = set(existing)
    for item, item_id in zip(events, ids, strict=True):
        if isinstance(item_id, str):
            if item_id in seen:
                continue
            seen.add(item_id)
        expected.append(item)
    stored = Counter((row.event_type, row.customer_id, row.value) for row in answer.rows)
    assert stored == Counter(
        (item["eventType"], item["customerId"], expected_value(item["value"])) for item in expected
    )
    assert {item["id"] for item in expected if isinstance(item.get("id"), str)} <= {
        row.id for row in answer.rows
    }
    for row in answer.rows:
        [item] = [item for item in expected if item["customerId"] == row.customer_id]
        check_time(row, item.get("timestamp", Missing.FIELD), arrival)
    assert_listed(ingest, answer.rows)


ingest_paths = st.sampled_from(["/usage/api.calls", "/usagebatch"])


@fuzz(200)
@given(path=ingest_paths, body=st.binary(max_size=300))
def test_random_bytes_are_refused_with_a_json_error(
    ingest: IngestServer, path: str, body: bytes
) -> None:
    assert post(ingest, path, body).status != 201


@fuzz(150)
@given(
    path=ingest_paths,
    size=st.integers(min_value=1, max_value=3),
    optional=optional_fields,
    cut=st.integers(min_value=0),
)
def test_truncated_json_is_refused_with_400(
    ingest: IngestServer, path: str, size: int, optional: list[str], cut: int
) -> None:
    if path == "/usagebatch":
        body = encode([valid_event(event_type="api.calls", optional=optional) for _ in range(size)])
    else:
        body = encode(valid_event(optional=optional))
    assert post(ingest, path, body[: cut % len(body)]).status == 400


@pytest.mark.parametrize(
    "body",
    [b"[]", b"{}", b"null", b'"[]"', b"1", encode({"eventType": "api.calls", "customerId": "c"})],
    ids=["empty-array", "object", "null", "string", "number", "event-not-in-array"],
)
def test_batch_that_is_not_a_non_empty_array_is_refused_with_400(
    ingest: IngestServer, body: bytes
) -> None:
    assert post(ingest, "/usagebatch", body).status == 400


DEPTH = 5_000  # past any parser's recursion limit


@pytest.mark.parametrize("path", ["/usage/api.calls", "/usagebatch"])
@pytest.mark.parametrize(
    "body",
    [
        b"[" * DEPTH + b"]" * DEPTH,
        b'{"a":' * DEPTH + b"1" + b"}" * DEPTH,
        b'[{"eventType":"api.calls","customerId":"deep","value":1,"metadata":'
        + b"[" * DEPTH
        + b"]" * DEPTH
        + b"}]",
    ],
    ids=["arrays", "objects", "event-in-arrays"],
)
def test_deeply_nested_body_is_refused_with_a_4xx(
    ingest: IngestServer, path: str, body: bytes
) -> None:
    assert post(ingest, path, body).status != 201


@pytest.mark.parametrize("invalid_at", [None, 0, MAX_BATCH_SIZE])
def test_batch_over_max_batch_size_is_refused_with_413(
    ingest: IngestServer, invalid_at: int | None
) -> None:
    events: list[object] = [
        {"eventType": "api.calls", "customerId": "big-batch", "value": 1}
        for _ in range(MAX_BATCH_SIZE + 1)
    ]
    if invalid_at is not None:
        events[invalid_at] = {"value": RawJSON("1e999")}
    answer = post(ingest, "/usagebatch", encode(events))
    assert answer.status == 413, answer
    check_refused_batch(answer, events)


@pytest.mark.parametrize("path", ["/usage/api.calls", "/usagebatch"])
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_body_over_the_size_limit_is_refused_with_413(
    ingest: IngestServer, path: str, chunked: bool
) -> None:
    one = encode({"eventType": "api.calls", "customerId": "huge", "value": 1})
    body = b"[" + b",".join([one] * (MAX_BODY_BYTES // len(one) + 1)) + b"]"
    content: bytes | Iterator[bytes] = body
    if chunked:  # no Content-Length: the limit must hold while the body streams in
        content = (body[i : i + 65536] for i in range(0, len(body), 65536))
    response = ingest.client.post(path, content=content)
    assert response.status_code == 413, response.text[:300]
    assert isinstance(response.json()["error"], str)
    assert ingest.stored.new_rows() == []


@pytest.mark.parametrize(
    "timestamp",
    ["0001-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00", "0001-01-01T23:59:59-14:00"],
)
def test_event_at_the_start_of_time_is_refused_or_harmless(
    ingest: IngestServer, timestamp: str
) -> None:
    """An accepted event must not break the reads and the aggregation that include it."""
    event = valid_event(optional=["id"])
    event["timestamp"] = timestamp
    answer = post(ingest, "/usage/api.calls", encode(event))
    assert answer.status in (201, 400), answer
    if answer.status == 400:
        return
    [row] = answer.rows
    customer = quote(str(event["customerId"]), safe="")
    for method, path, params in [
        ("GET", "/events", {"customerId": event["customerId"]}),
        ("GET", f"/customers/{customer}/usage", {"at": str(row.ts_ms)}),
        ("GET", f"/customers/{customer}/usage", {"at": str(row.ts_ms), "period": "hourly"}),
        ("POST", "/aggregations/trigger", {}),
        ("GET", "/aggregations", {"customerId": event["customerId"]}),
    ]:
        response, context = ingest.send(method, path, params=params)
        assert response.status_code < 300, context


def cursor(*parts: str) -> str:
    return base64.urlsafe_b64encode("\x1f".join(parts).encode()).decode().rstrip("=")


HUGE = "99999999999999999999999"  # does not fit a 64-bit integer


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/events?limit=%C2%B2"),  # "²" passes str.isdigit(), not int()
        ("GET", "/aggregations?limit=%C2%B2"),
        ("GET", "/events?from=%C2%B2"),
        ("GET", f"/events?from={HUGE}"),
        ("GET", f"/events?to=-{HUGE}"),
        ("GET", f"/aggregations?from={HUGE}"),
        ("GET", "/events?cursor=%C3%A9"),  # not ASCII, so not base64
        ("GET", "/aggregations?cursor=%C3%A9"),
        ("GET", "/deliveries?cursor=%C3%A9"),
        ("GET", "/aggregations/sub_ABC123_daily_20250115/events?cursor=%C3%A9"),
        ("GET", f"/events?cursor={cursor(HUGE, '1')}"),
        ("GET", f"/aggregations?cursor={cursor(HUGE, 'x')}"),
        ("GET", f"/deliveries?cursor={cursor(HUGE)}"),
        ("GET", f"/deliveries/{HUGE}"),
        ("POST", f"/deliveries/{HUGE}/redeliver"),
        ("GET", "/deliveries/%C2%B2"),
        ("POST", "/deliveries/%C2%B2/redeliver"),
        ("GET", f"/customers/c/usage?at={HUGE}"),
        ("GET", "/customers/c/usage?at=999999999999999"),
        ("GET", "/customers/c/usage?at=-999999999999999"),
        ("GET", "/customers/c/usage?at=%C2%B2"),
        ("GET", "/customers/c/usage?at=9999-12-31T23:59:59"),
        ("GET", "/customers/c/usage?at=0001-01-01T00:00:00%2B14:00"),
        ("GET", "/customers/c/usage?at=0001-01-01T00:30:00&period=hourly"),
        ("GET", "/aggregations/c_daily_99991231/events"),
        ("GET", "/aggregations/c_weekly_999952/events"),
        ("GET", "/aggregations/c_hourly_0001010100/events"),
    ],
)
def test_out_of_range_query_values_never_get_a_5xx(
    ingest: IngestServer, method: str, path: str
) -> None:
    """Values schemathesis seldom generates: digits int() refuses, numbers past 64 bits,
    times at the edges of years 1 and 9999. A 4xx JSON error or a plain answer will do."""
    response, context = ingest.send(method, path)
    assert response.status_code < 500, context
    if response.status_code >= 400:
        assert isinstance(response.json()["error"], str), context


@fuzz(150)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]),
    segments=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=3),
    with_key=st.booleans(),
)
def test_unknown_routes_and_methods_get_a_json_error(
    ingest: IngestServer, method: str, segments: list[str], with_key: bool
) -> None:
    path = "/" + "/".join(quote(segment, safe="") for segment in segments)
    headers = AUTH if with_key else {"x-apikey": ""}
    response, context = ingest.send(method, path, content=b"{}", headers=headers)
    assert response.status_code < 500, context
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/json"), context
        assert isinstance(response.json()["error"], str), context
