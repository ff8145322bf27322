"""POST /api/v1/events over raw HTTP: content types, CloudEvents rules, problem details."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec
import pytest

from meterd.config.model import EventTypeConfig, SystemConfig
from meterd.storage.base import EventQuery, Store
from meterd.timeutil import now_ms, parse_iso_ms
from tests.conftest import API_KEY, make_config

pytestmark = pytest.mark.ingest_process

SINGLE = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
T0 = "2025-01-15T10:00:00Z"


@pytest.fixture
def config() -> SystemConfig:
    return make_config(
        events={
            "api.calls": EventTypeConfig("sum"),
            "llm.tokens": EventTypeConfig("sum", value_property="$.usage['output-tokens']"),
            "page.views": EventTypeConfig("count"),
        },
        max_batch_size=10,
    )


@pytest.fixture
async def om(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """The same app, addressed as OpenMeter's clients do: Bearer, no x-apikey."""
    client.headers.pop("x-apikey")
    client.headers["Authorization"] = f"Bearer {API_KEY}"
    return client


def cloudevent(**fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": "evt-1",
        "source": "my-app",
        "type": "api.calls",
        "subject": "cus_1",
        "time": T0,
        "data": {"value": 3, "path": "/v1/x"},
    }
    event.update(fields)
    return {key: value for key, value in event.items() if value is not ...}


async def post(
    om: httpx.AsyncClient, body: Any, content_type: str = SINGLE, **headers: str
) -> httpx.Response:
    content = body if isinstance(body, bytes) else msgspec.json.encode(body)
    return await om.post(
        "/api/v1/events", content=content, headers={"Content-Type": content_type, **headers}
    )


async def stored(store: Store) -> list[Any]:
    return await store.list_events(EventQuery(limit=1000))


def assert_problem(response: httpx.Response, status: int, *fragments: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"] == "about:blank"
    assert body["title"]
    assert body["instance"] == "/api/v1/events"
    for fragment in fragments:
        assert fragment in msgspec.json.encode(body).decode(), body
    return body


async def test_one_cloudevent_is_stored_as_a_usage_event(
    om: httpx.AsyncClient, store: Store
) -> None:
    response = await post(om, cloudevent())
    assert response.status_code == 204
    assert response.content == b""
    [event] = await stored(store)
    assert event.event_type == "api.calls"
    assert event.customer_id == "cus_1"
    assert event.value == 3
    assert event.ts_ms == parse_iso_ms("2025-01-15T10:00:00+00:00")
    assert msgspec.json.decode(event.metadata or b"") == {"value": 3, "path": "/v1/x"}


@pytest.mark.parametrize("content_type", [BATCH, "application/json"])
async def test_a_batch_is_stored_whole(
    om: httpx.AsyncClient, store: Store, content_type: str
) -> None:
    batch = [cloudevent(id=f"evt-{i}", subject=f"cus_{i}", data={"value": i}) for i in range(5)]
    response = await post(om, batch, content_type)
    assert response.status_code == 204
    events = await stored(store)
    assert sorted(e.value for e in events) == [0, 1, 2, 3, 4]


async def test_application_json_takes_one_event_too(om: httpx.AsyncClient, store: Store) -> None:
    response = await post(om, cloudevent(), "application/json; charset=utf-8")
    assert response.status_code == 204
    assert len(await stored(store)) == 1


async def test_value_property_and_count_meters(om: httpx.AsyncClient, store: Store) -> None:
    batch = [
        cloudevent(id="a", type="llm.tokens", data={"usage": {"output-tokens": "12.5"}}),
        cloudevent(id="b", type="page.views", data=None),
        cloudevent(id="c", type="page.views", data={"value": "ignored"}),
    ]
    assert (await post(om, batch, BATCH)).status_code == 204
    by_type = {(e.event_type, e.id): e for e in await stored(store)}
    assert by_type["llm.tokens", "ce:6:my-appa"].value == 12.5
    views = [e for e in by_type.values() if e.event_type == "page.views"]
    assert len(views) == 2
    metadata = sorted(repr(msgspec.json.decode(e.metadata or b"null")) for e in views)
    assert metadata == ["None", "{'value': 'ignored'}"]


async def test_time_is_optional(om: httpx.AsyncClient, store: Store) -> None:
    before = now_ms()
    assert (await post(om, cloudevent(time=...))).status_code == 204
    assert (await post(om, cloudevent(id="evt-2", time=None))).status_code == 204
    for event in await stored(store):
        assert before <= event.ts_ms <= now_ms()


async def test_same_source_and_id_is_stored_once(om: httpx.AsyncClient, store: Store) -> None:
    for _ in range(3):
        assert (await post(om, cloudevent())).status_code == 204
    assert (await post(om, [cloudevent(), cloudevent()], BATCH)).status_code == 204
    # The same id from another source is another event.
    assert (await post(om, cloudevent(source="other-app"))).status_code == 204
    events = await stored(store)
    assert sorted(e.id for e in events) == ["ce:6:my-appevt-1", "ce:9:other-appevt-1"]


async def test_source_id_pairs_that_join_alike_stay_apart(
    om: httpx.AsyncClient, store: Store
) -> None:
    batch = [cloudevent(source="ab", id="c"), cloudevent(source="a", id="bc")]
    assert (await post(om, batch, BATCH)).status_code == 204
    long = "x" * 300
    assert (await post(om, cloudevent(source=long, id="1"))).status_code == 204
    assert (await post(om, cloudevent(source=long, id="1"))).status_code == 204
    assert (await post(om, cloudevent(source=long, id="2"))).status_code == 204
    ids = [e.id for e in await stored(store)]
    assert len(ids) == 4 and len(set(ids)) == 4
    assert all(len(i) <= 256 for i in ids)


async def test_an_invalid_event_in_a_batch_stores_nothing(
    om: httpx.AsyncClient, store: Store
) -> None:
    batch = [cloudevent(id="ok"), cloudevent(id="bad", subject=None), cloudevent(id="x", data=[])]
    response = await post(om, batch, BATCH)
    body = assert_problem(response, 400, "2 of 3 events are invalid")
    assert body["validCount"] == 1
    assert [p["index"] for p in body["validationErrors"]] == [1, 2]
    assert await stored(store) == []


@pytest.mark.parametrize(
    ("event", "fragment"),
    [
        (cloudevent(specversion="0.3"), "specversion: must be '1.0'"),
        (cloudevent(id=...), "id: required"),
        (cloudevent(id=""), "id: must not be empty"),
        (cloudevent(source=...), "source: required"),
        (cloudevent(source="a\nb"), "source: must not contain control characters"),
        (cloudevent(type=...), "type: required"),
        (cloudevent(type="nope"), "type: 'nope' is not a configured"),
        (cloudevent(subject=...), "subject: required"),
        (cloudevent(subject=""), "subject: must not be empty"),
        (cloudevent(subject="s" * 257), "subject: at most 256 characters"),
        (cloudevent(time="yesterday"), "time: must be an RFC 3339 time"),
        (cloudevent(time="2999-01-01T00:00:00Z"), "time: more than 5 minutes in the future"),
        (cloudevent(datacontenttype="text/plain"), "datacontenttype: must be"),
        (cloudevent(data="text"), "data: must be a JSON object"),
        (cloudevent(data=[1]), "data: must be a JSON object"),
        (cloudevent(data=None), "data: has no value at $.value"),
        (cloudevent(data={"value": True}), "must be a number, got true or false"),
        (cloudevent(data={"value": "12abc"}), "not a number"),
        (
            cloudevent(type="llm.tokens", data={"usage": 5}),
            "cannot follow $.usage['output-tokens']",
        ),
    ],
)
async def test_each_rule_is_named_in_a_problem(
    om: httpx.AsyncClient, store: Store, event: dict[str, Any], fragment: str
) -> None:
    assert_problem(await post(om, event), 400, fragment)
    assert_problem(await post(om, [event], BATCH), 400, fragment, "validationErrors")
    assert await stored(store) == []


WRONG_TYPES = [
    ({"id": 1}, "id: must be a string, got a number"),
    ({"id": None}, "id: must be a string, got null"),
    ({"source": ["a"]}, "source: must be a string (a URI-reference such as my-app), got an array"),
    ({"specversion": 1.0}, 'specversion: must be the string "1.0", got a number'),
    ({"type": {"a": 1}}, "type: must be a string (a configured meter's event type), got an object"),
    ({"subject": 7}, "subject: must be a string (the customer id), got a number"),
    ({"subject": True}, "subject: must be a string (the customer id), got true or false"),
    (
        {"time": 1736935200},
        "time: must be an RFC 3339 time such as 2025-01-15T10:00:00Z, got a number",
    ),
    (
        {"time": "yesterday"},
        "time: must be an RFC 3339 time such as 2025-01-15T10:00:00Z, got 'yesterday'",
    ),
    (
        {"datacontenttype": 3},
        "datacontenttype: must be a string such as 'application/json', got a number",
    ),
]


@pytest.mark.parametrize(("fields", "problem"), WRONG_TYPES, ids=[p for _, p in WRONG_TYPES])
async def test_each_wrong_type_is_said_in_the_clients_words(
    om: httpx.AsyncClient, store: Store, fields: dict[str, Any], problem: str
) -> None:
    one = assert_problem(await post(om, cloudevent(**fields)), 400)
    assert one["detail"] == problem
    assert one["errors"] == [problem]
    many = assert_problem(await post(om, [cloudevent(id="ok"), cloudevent(**fields)], BATCH), 400)
    assert many["validationErrors"] == [{"index": 1, "errors": [problem]}]
    for body in (one, many):
        assert "`" not in msgspec.json.encode(body).decode()  # no decoder wording
    assert await stored(store) == []


async def test_every_wrong_type_of_one_event_is_named(om: httpx.AsyncClient) -> None:
    event = cloudevent(id=1, subject=2, time=False, type=...)
    body = assert_problem(await post(om, event), 400)
    assert body["errors"] == [
        "type: required",
        "id: must be a string, got a number",
        "subject: must be a string (the customer id), got a number",
        "time: must be an RFC 3339 time such as 2025-01-15T10:00:00Z, got true or false",
    ]


@pytest.mark.parametrize(
    ("body", "content_type", "fragment"),
    [
        (b'{"id": ', SINGLE, "malformed JSON: the body ends before the JSON does"),
        (b'[{"id": 1} x]', BATCH, "malformed JSON: unexpected character at byte offset"),
        (b'{"id": "a",}', SINGLE, "malformed JSON: unexpected character at byte offset"),
        (b'[1, "x", null]', BATCH, "each event must be a JSON object (a CloudEvent)"),
    ],
)
async def test_bodies_that_are_not_json_objects_are_said_plainly(
    om: httpx.AsyncClient, body: bytes, content_type: str, fragment: str
) -> None:
    problem = assert_problem(await post(om, body, content_type), 400, fragment)
    assert "`" not in msgspec.json.encode(problem).decode()


@pytest.mark.parametrize(
    ("body", "content_type", "status", "fragment"),
    [
        (b"{", SINGLE, 400, "malformed JSON"),
        (b"[]", BATCH, 400, "the batch is empty"),
        (b"[1]", BATCH, 400, "each event must be a JSON object (a CloudEvent)"),
        (b"{}", BATCH, 400, "must be a JSON array of CloudEvents"),
        (b"[]", SINGLE, 400, "must be one CloudEvent"),
        (b"42", "application/json", 400, "must be one CloudEvent"),
        (b"{}", "text/plain", 415, "'text/plain' is not accepted"),
        (b"{}", "", 415, "'(none)' is not accepted"),
        (b"[" * 100_000 + b"]" * 100_000, BATCH, 400, "nested too deeply"),
    ],
)
async def test_bodies_that_are_not_cloudevents(
    om: httpx.AsyncClient, body: bytes, content_type: str, status: int, fragment: str
) -> None:
    assert_problem(await post(om, body, content_type), status, fragment)


async def test_too_many_events_is_413(om: httpx.AsyncClient, store: Store) -> None:
    batch = [cloudevent(id=str(i)) for i in range(11)]
    body = assert_problem(await post(om, batch, BATCH), 413, "at most 10")
    assert body["maxAllowed"] == 10
    assert await stored(store) == []


async def test_too_large_a_body_is_413(om: httpx.AsyncClient) -> None:
    huge = cloudevent(data={"value": 1, "pad": "x" * 1_100_000})
    assert_problem(await post(om, huge), 413, "exceeds")


async def test_bearer_key_is_required(om: httpx.AsyncClient, store: Store) -> None:
    om.headers.pop("Authorization")
    response = await post(om, cloudevent())
    assert_problem(response, 401, "Bearer")
    assert response.headers["www-authenticate"] == "Bearer"
    wrong = await post(om, cloudevent(), Authorization="Bearer nope")
    assert_problem(wrong, 401)
    assert await stored(store) == []


async def test_unknown_route_and_method_are_problems(om: httpx.AsyncClient) -> None:
    missing = await om.get("/api/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    wrong = await om.get("/api/v1/events")
    assert wrong.status_code == 405
    assert wrong.headers["content-type"] == "application/problem+json"


async def test_native_and_cloudevents_routes_feed_the_same_meter(
    om: httpx.AsyncClient, store: Store
) -> None:
    native = {"customerId": "cus_1", "value": 2, "timestamp": T0}
    headers = {"x-apikey": API_KEY}
    assert (await om.post("/usage/api.calls", json=native, headers=headers)).status_code == 201
    assert (await post(om, cloudevent(data={"value": 5}))).status_code == 204

    listed = (await om.get("/events", params={"customerId": "cus_1"})).json()
    assert sorted(item["value"] for item in listed) == [2, 5]
    assert "ce:6:my-appevt-1" in {item["_id"] for item in listed}

    usage = await om.get("/customers/cus_1/usage", params={"period": "daily", "at": T0})
    assert usage.json()["events"] == {"api.calls": 7}

    assert (await om.post("/aggregations/trigger")).status_code == 202
    records = (await om.get("/aggregations", params={"period": "hourly"})).json()
    [record] = [r for r in records if r["customerId"] == "cus_1"]
    assert record["events"] == {"api.calls": 7}
    assert record["eventCounts"] == {"api.calls": 2}

    deliveries = (await om.get("/deliveries", params={"limit": 100})).json()
    [delivery] = [d for d in deliveries if d["aggregationId"] == record["_id"]]
    payload = (await om.get(f"/deliveries/{delivery['id']}")).json()["payload"]
    assert payload["data"]["events"] == {"api.calls": 7}


@pytest.mark.parametrize("config", [make_config(max_event_age_ms=86_400_000)])
async def test_events_older_than_max_event_age_are_refused_naming_the_limit(
    om: httpx.AsyncClient, store: Store
) -> None:
    recent = cloudevent(id="recent", time=None)
    old = cloudevent(id="old", time="2020-01-01T00:00:00Z")
    # This surface answers every validation problem with 400, as OpenMeter does.
    one = await post(om, old)
    assert_problem(one, 400, "time: older than maxEventAge (1d)")
    batch = await post(om, [recent, old], BATCH)
    body = assert_problem(batch, 400, "older than maxEventAge")
    assert [p["index"] for p in body["validationErrors"]] == [1]
    assert await stored(store) == []
    assert (await post(om, recent)).status_code == 204
