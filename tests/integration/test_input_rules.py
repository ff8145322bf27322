"""Strict input through the app: unknown fields, the path's event type, ids, short errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from meterd.http.app import create_app
from meterd.settings import ServerSettings
from meterd.storage.base import EventQuery, Store
from tests.conftest import API_KEY, make_config


async def stored(store: Store) -> list[Any]:
    return await store.list_events(EventQuery(limit=1000))


async def test_an_unknown_field_is_a_400_with_a_did_you_mean(
    client: httpx.AsyncClient, store: Store
) -> None:
    response = await client.post(
        "/usage/api.calls",
        json={"customerId": "c", "value": 1, "timestmp": "2025-01-01T00:00:00Z"},
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": "timestmp: unknown field (did you mean 'timestamp'?)",
        "field": "timestmp",
    }
    assert await stored(store) == []


async def test_an_unknown_field_in_a_batch_is_a_422_for_its_index(
    client: httpx.AsyncClient, store: Store
) -> None:
    good = {"eventType": "api.calls", "customerId": "c", "value": 1}
    response = await client.post("/usagebatch", json=[good, {**good, "customer": "x"}, good])
    assert response.status_code == 422
    assert response.json()["validationErrors"] == [
        {
            "index": 1,
            "errors": ["customer: unknown field (did you mean 'customerId'?)"],
            "field": "customer",
        }
    ]
    assert await stored(store) == []


@pytest.fixture
async def lenient_client(
    settings: ServerSettings, store: Store
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, make_config(unknown_fields="ignore"), store)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://meterd.test",
            headers={"x-apikey": API_KEY},
        ) as http:
            yield http


async def test_unknown_fields_ignore_keeps_clients_with_extras_working(
    lenient_client: httpx.AsyncClient, store: Store
) -> None:
    single = await lenient_client.post(
        "/usage/api.calls", json={"customerId": "c", "value": 1, "source": "sdk-1.2"}
    )
    assert single.status_code == 201, single.text
    batch = await lenient_client.post(
        "/usagebatch",
        json=[{"eventType": "api.calls", "customerId": "c", "value": 2, "_meta": {"x": 1}}],
    )
    assert batch.status_code == 201, batch.text
    assert sorted(e.value for e in await stored(store)) == [1, 2]
    # Known fields keep every rule.
    bad = await lenient_client.post("/usage/api.calls", json={"customerId": "c", "value": "1"})
    assert bad.status_code == 400 and bad.json()["field"] == "value"


async def test_a_body_event_type_that_differs_from_the_path_is_a_400(
    client: httpx.AsyncClient, store: Store
) -> None:
    response = await client.post(
        "/usage/api.calls", json={"eventType": "storage.bytes", "customerId": "c", "value": 1}
    )
    assert response.status_code == 400
    assert response.json()["field"] == "eventType"
    same = await client.post(
        "/usage/api.calls", json={"eventType": "api.calls", "customerId": "c", "value": 1}
    )
    assert same.status_code == 201
    assert [e.event_type for e in await stored(store)] == ["api.calls"]


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("k" * 257, "at most 256 characters"),
        ("\u202ekey".encode(), "RIGHT-TO-LEFT OVERRIDE"),
        ("key\u0085".encode(), "control characters"),
        (b"key\xff", "must be UTF-8 text"),
    ],
)
async def test_the_idempotency_key_obeys_the_id_rules(
    client: httpx.AsyncClient, store: Store, key: str | bytes, problem: str
) -> None:
    response = await client.post(
        "/usage/api.calls",
        json={"customerId": "c", "value": 1},
        headers={b"Idempotency-Key": key if isinstance(key, bytes) else key.encode()},
    )
    assert response.status_code == 400
    assert response.json()["field"] == "Idempotency-Key"
    assert problem in response.json()["error"]
    assert await stored(store) == []


async def test_a_utf8_idempotency_key_is_the_same_id_as_in_a_body(
    client: httpx.AsyncClient, store: Store
) -> None:
    headers = {b"Idempotency-Key": "kunde-ø-€".encode()}
    first = await client.post(
        "/usage/api.calls", json={"customerId": "c", "value": 1}, headers=headers
    )
    assert first.json()["id"] == "kunde-ø-€"
    again = await client.post(
        "/usage/api.calls", json={"customerId": "c", "value": 1, "id": "kunde-ø-€"}
    )
    assert again.json()["duplicate"] is True


@pytest.mark.parametrize(
    "customer", ["c\n", "c\u0085", "c\u202e", "c\u2066", "c\u2028", "\ufeffc", "c\u009f"]
)
async def test_invisible_characters_in_ids_are_refused(
    client: httpx.AsyncClient, store: Store, customer: str
) -> None:
    response = await client.post("/usage/api.calls", json={"customerId": customer, "value": 1})
    assert response.status_code == 400
    body = response.json()
    assert body["field"] == "customerId"
    assert body["error"].startswith(
        "customerId: must not contain control characters or invisible formatting characters"
    )
    batch = await client.post(
        "/usagebatch",
        json=[{"eventType": "api.calls", "customerId": "c", "value": 1, "id": customer}],
    )
    assert batch.status_code == 422
    assert batch.json()["validationErrors"][0]["field"] == "id"
    assert await stored(store) == []


async def test_errors_never_echo_a_long_input_whole(client: httpx.AsyncClient) -> None:
    huge = "t" * 60_000
    response = await client.post(f"/usage/{huge}", json={"customerId": "c", "value": 1})
    assert response.status_code == 400
    assert response.json()["field"] == "eventType"
    assert len(response.content) < 400
    missing = await client.get(f"/no/such/{huge}")
    assert missing.status_code == 404
    assert len(missing.content) < 400
    listed = await client.get("/events", params={"from": huge})
    assert listed.status_code == 400 and len(listed.content) < 400
    batch = await client.post(
        "/usagebatch", json=[{"eventType": huge, "customerId": "c", "value": 1}]
    )
    assert batch.status_code == 422 and len(batch.content) < 600


async def test_messages_never_show_decoder_internals(client: httpx.AsyncClient) -> None:
    bodies = [
        b'{"customerId": "c", "value": "1"}',
        b'{"customerId": "c\\u0001", "value": 1}',
        b'{"customerId": "c", "value": 1, "timestamp": [1]}',
        b'{"customerId": ["c"], "value": 1}',
        b"[1, 2]",
        b'{"customerId": "c", "value": 1,}',
    ]
    for body in bodies:
        response = await client.post("/usage/api.calls", content=body)
        assert response.status_code == 400
        error = response.json()["error"]
        for internal in ("Expected", "`", "regex", "$.", "\\x", "[^", "got `"):
            assert internal not in error, (body, error)
