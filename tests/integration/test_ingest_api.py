"""The ingest routes through the real app and a real database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from meterd.storage.base import EventQuery, Store

pytestmark = pytest.mark.ingest_process

T0 = "2025-01-15T10:00:00.000Z"


def event(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"eventType": "api.calls", "customerId": "cus_1", "value": 1}
    body.update(fields)
    return body


async def stored_events(store: Store, **filters: Any) -> list[Any]:
    return await store.list_events(EventQuery(limit=1000, **filters))


async def test_single_event_is_captured_with_the_template_shape(
    client: httpx.AsyncClient, store: Store
) -> None:
    response = await client.post(
        "/usage/api.calls",
        json={"customerId": "sub_ABC123", "value": 1, "metadata": {"path": "/v1/x"}},
    )
    assert response.status_code == 201
    body = response.json()
    assert body["message"] == "Event captured"
    assert body["eventType"] == "api.calls"
    assert body["customerId"] == "sub_ABC123"
    assert body["duplicate"] is False
    [stored] = await stored_events(store)
    assert stored.id == body["id"]
    assert stored.metadata is not None and b'"path"' in stored.metadata


async def test_batch_is_captured(client: httpx.AsyncClient, store: Store) -> None:
    batch = [event(customerId=f"cus_{i}", value=i, timestamp=T0) for i in range(10)]
    response = await client.post("/usagebatch", json=batch)
    assert response.status_code == 201
    assert response.json() == {
        "message": "Events captured",
        "count": 10,
        "stored": 10,
        "duplicates": 0,
    }
    assert len(await stored_events(store)) == 10


async def test_same_event_id_three_times_is_stored_once(
    client: httpx.AsyncClient, store: Store
) -> None:
    for _ in range(3):
        response = await client.post(
            "/usage/api.calls", json={"customerId": "cus_1", "value": 5, "id": "evt-1"}
        )
        assert response.status_code == 201
    assert response.json()["duplicate"] is True
    for _ in range(3):
        response = await client.post("/usagebatch", json=[event(id="evt-2"), event(id="evt-3")])
        assert response.status_code == 201
    assert response.json()["duplicates"] == 2
    in_one_batch = await client.post("/usagebatch", json=[event(id="evt-4")] * 3)
    assert in_one_batch.json() == {
        "message": "Events captured",
        "count": 3,
        "stored": 1,
        "duplicates": 2,
    }
    listed = (await client.get("/events")).json()
    assert sorted(item["_id"] for item in listed) == ["evt-1", "evt-2", "evt-3", "evt-4"]


async def test_idempotency_key_header_deduplicates(client: httpx.AsyncClient, store: Store) -> None:
    for _ in range(3):
        response = await client.post(
            "/usage/api.calls",
            json={"customerId": "cus_1", "value": 5},
            headers={"Idempotency-Key": "retry-me"},
        )
        assert response.status_code == 201
        assert response.json()["id"] == "retry-me"
    assert [e.id for e in await stored_events(store)] == ["retry-me"]


async def test_concurrent_duplicates_are_stored_once(
    client: httpx.AsyncClient, store: Store
) -> None:
    requests = [
        client.post("/usage/api.calls", json={"customerId": "c", "value": 1, "id": f"id-{i % 10}"})
        for i in range(100)
    ]
    responses = await asyncio.gather(*requests)
    assert all(r.status_code == 201 for r in responses)
    assert sum(not r.json()["duplicate"] for r in responses) == 10
    assert len(await stored_events(store)) == 10


async def test_concurrent_requests_share_transactions(
    client: httpx.AsyncClient, store: Store
) -> None:
    before = store.ingest_transactions
    responses = await asyncio.gather(
        *(client.post("/usage/api.calls", json={"customerId": "c", "value": i}) for i in range(200))
    )
    assert all(r.status_code == 201 for r in responses)
    assert len(await stored_events(store)) == 200
    # Group commit: 200 concurrent requests must not need 200 commits.
    assert store.ingest_transactions - before < 200


async def test_client_timestamp_iso_and_epoch_ms(client: httpx.AsyncClient, store: Store) -> None:
    await client.post("/usage/api.calls", json={"customerId": "c", "value": 1, "timestamp": T0})
    await client.post(
        "/usage/api.calls", json={"customerId": "c", "value": 1, "timestamp": 1736935200001}
    )
    await client.post(
        "/usage/api.calls",
        json={"customerId": "c", "value": 1, "timestamp": "2025-01-15T11:00:00.002+01:00"},
    )
    times = sorted(e.ts_ms for e in await stored_events(store))
    assert times == [1736935200000, 1736935200001, 1736935200002]


BAD_SINGLE_BODIES = [
    (b"{not json", "malformed JSON"),
    (b'{"customerId": "c", "value": "12"}', "value"),
    (b'{"customerId": "c", "value": true}', "value"),
    (b'{"customerId": "c", "value": NaN}', "malformed JSON"),
    (b'{"customerId": "c", "value": Infinity}', "malformed JSON"),
    (b'{"customerId": "c", "value": 1e999}', "value"),
    (b'{"customerId": "", "value": 1}', "customerId"),
    (b'{"customerId": 7, "value": 1}', "customerId"),
    (b'{"value": 1}', "customerId"),
    (b'{"customerId": "c"}', "value"),
    (b'{"customerId": "c", "value": 1, "metadata": [1, 2]}', "metadata"),
    (b'{"customerId": "c", "value": 1, "metadata": "text"}', "metadata"),
    (b'{"customerId": "c", "value": 1, "timestamp": "2999-01-01T00:00:00Z"}', "timestamp"),
    (b'{"customerId": "c", "value": 1, "timestamp": "yesterday"}', "timestamp"),
    (b'{"customerId": "c", "value": 1, "timestamp": 1736935200}', "timestamp"),
    (b'{"customerId": "c", "value": 1, "id": ""}', "id"),
    (b'{"customerId": "line\\nbreak", "value": 1}', "customerId"),
    (b'{"customerId": "c", "value": 1, "timestamp": "0001-01-01T00:00:00Z"}', "timestamp"),
    (
        b'{"customerId": "c", "value": 1, "metadata": '
        + b'{"a":' * 5000
        + b"1"
        + b"}" * 5000
        + b"}",
        "nested",
    ),
    (b"[]", "object"),
    (b"", "malformed JSON"),
]


@pytest.mark.parametrize(("body", "named"), BAD_SINGLE_BODIES)
async def test_bad_single_event_is_a_400_naming_the_problem(
    client: httpx.AsyncClient, store: Store, body: bytes, named: str
) -> None:
    response = await client.post(
        "/usage/api.calls", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert named in response.json()["error"]
    assert await stored_events(store) == []


async def test_unknown_event_type_is_a_400(client: httpx.AsyncClient, store: Store) -> None:
    response = await client.post("/usage/nope", json={"customerId": "c", "value": 1})
    assert response.status_code == 400
    assert "eventType" in response.json()["error"]
    assert await stored_events(store) == []


async def test_huge_body_is_a_413(client: httpx.AsyncClient, store: Store) -> None:
    body = b'{"customerId": "c", "value": 1, "metadata": {"pad": "' + b"x" * 10_000_000 + b'"}}'
    response = await client.post("/usage/api.calls", content=body)
    assert response.status_code == 413
    assert "exceeds" in response.json()["error"]
    response = await client.post("/usagebatch", content=b"[" + body + b"]")
    assert response.status_code == 413
    assert await stored_events(store) == []


@pytest.mark.parametrize("body", [b"[]", b"{}", b'"events"', b"3", b"null"])
async def test_batch_that_is_not_a_non_empty_array_is_a_400(
    client: httpx.AsyncClient, body: bytes
) -> None:
    response = await client.post("/usagebatch", content=body)
    assert response.status_code == 400
    assert "error" in response.json()


async def test_batch_over_max_size_is_a_413_with_counts(
    client: httpx.AsyncClient, store: Store
) -> None:
    response = await client.post("/usagebatch", json=[event()] * 101)
    assert response.status_code == 413
    body = response.json()
    assert body["received"] == 101
    assert body["maxAllowed"] == 100
    assert "error" in body
    assert await stored_events(store) == []


async def test_batch_with_invalid_events_is_a_422_and_stores_nothing(
    client: httpx.AsyncClient, store: Store
) -> None:
    batch = [
        event(),
        event(value="3"),
        event(customerId=""),
        event(eventType="unknown.type"),
        event(metadata=[1]),
        event(timestamp="2999-01-01T00:00:00Z"),
        "not an object",
        event(),
    ]
    response = await client.post("/usagebatch", json=batch)
    assert response.status_code == 422
    body = response.json()
    assert body["validCount"] == 2
    assert body["invalidCount"] == 6
    problems = {p["index"]: " ".join(p["errors"]) for p in body["validationErrors"]}
    assert sorted(problems) == [1, 2, 3, 4, 5, 6]
    assert "value" in problems[1]
    assert "customerId" in problems[2]
    assert "eventType" in problems[3]
    assert "metadata" in problems[4]
    assert "timestamp" in problems[5]
    assert await stored_events(store) == []


async def test_batch_with_one_bad_value_after_good_ones_stores_nothing(
    client: httpx.AsyncClient, store: Store
) -> None:
    batch = [event(id=f"e{i}") for i in range(50)] + [event(value=1e308 * 10)]
    response = await client.post(
        "/usagebatch", content=str(batch).replace("'", '"').replace("inf", "1e999").encode()
    )
    assert response.status_code == 422
    assert response.json()["validationErrors"][0]["index"] == 50
    assert await stored_events(store) == []


async def test_a_body_sent_in_chunks_is_read_whole_and_limited(
    client: httpx.AsyncClient, store: Store
) -> None:
    async def chunks(body: bytes, size: int) -> AsyncIterator[bytes]:
        for start in range(0, len(body), size):
            yield body[start : start + size]

    event = b'{"customerId": "chunky", "value": 7, "id": "chunked-1"}'
    response = await client.post("/usage/api.calls", content=chunks(event, 5))
    assert response.status_code == 201, response.text
    assert response.json()["id"] == "chunked-1"
    huge = b'{"customerId": "c", "value": 1, "metadata": "' + b"x" * 6_000_000 + b'"}'
    response = await client.post("/usage/api.calls", content=chunks(huge, 1 << 20))
    assert response.status_code == 413
    assert [e.id for e in await stored_events(store)] == ["chunked-1"]
