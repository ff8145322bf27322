"""Listing events, auth, service routes, config and the OpenAPI document."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from meterd.apikeys import display_prefix, generate_key, hash_key
from meterd.config.model import SystemConfig
from meterd.http.app import create_app
from meterd.http.docs import OPERATIONS
from meterd.settings import ServerSettings
from meterd.storage.base import Store
from tests.conftest import API_KEY


async def post_batch(client: httpx.AsyncClient, batch: list[dict[str, Any]]) -> None:
    response = await client.post("/usagebatch", json=batch)
    assert response.status_code == 201, response.text


async def test_events_are_listed_newest_first_with_period_keys(client: httpx.AsyncClient) -> None:
    await post_batch(
        client,
        [
            {
                "eventType": "api.calls",
                "customerId": "a",
                "value": 1,
                "id": "old",
                "timestamp": "2024-12-31T23:59:59.999Z",
            },
            {
                "eventType": "api.calls",
                "customerId": "a",
                "value": 2.5,
                "id": "new",
                "timestamp": "2025-01-01T00:00:00.000Z",
                "metadata": {"k": "v"},
            },
        ],
    )
    items = (await client.get("/events")).json()
    assert [item["_id"] for item in items] == ["new", "old"]
    newest, oldest = items
    assert newest["value"] == 2.5
    assert newest["metadata"] == {"k": "v"}
    assert oldest["metadata"] is None
    assert newest["timestamp"] == "2025-01-01T00:00:00.000Z"
    assert newest["receivedAt"].endswith("Z")
    assert (newest["hour"], newest["day"], newest["week"], newest["month"], newest["year"]) == (
        "2025010100",
        "20250101",
        "202501",
        "202501",
        "2025",
    )
    assert (oldest["day"], oldest["week"], oldest["month"], oldest["year"]) == (
        "20241231",
        "202501",
        "202412",
        "2024",
    )


async def test_events_filters(client: httpx.AsyncClient) -> None:
    await post_batch(
        client,
        [
            {"eventType": t, "customerId": c, "value": 1, "timestamp": f"2025-01-0{d}T00:00:00Z"}
            for t in ("api.calls", "storage.bytes")
            for c in ("a", "b")
            for d in (1, 2, 3)
        ],
    )

    async def count(**params: str) -> int:
        response = await client.get("/events", params=params)
        assert response.status_code == 200
        return len(response.json())

    assert await count() == 12
    assert await count(customerId="a") == 6
    assert await count(customerId="a", eventType="storage.bytes") == 3
    assert await count(**{"from": "2025-01-02T00:00:00Z"}) == 8
    assert await count(**{"to": "2025-01-02T00:00:00Z"}) == 8
    assert await count(**{"from": "1735776000000", "to": "1735776000000"}) == 4
    assert await count(limit="5") == 5


async def test_events_cursor_pages_through_everything(client: httpx.AsyncClient) -> None:
    same_time = "2025-01-01T00:00:00Z"
    await post_batch(
        client,
        [
            {
                "eventType": "api.calls",
                "customerId": "a",
                "value": i,
                "id": f"e{i:02d}",
                "timestamp": same_time if i % 2 else f"2025-01-01T00:00:{i:02d}Z",
            }
            for i in range(25)
        ],
    )
    seen: list[str] = []
    params: dict[str, str] = {"limit": "10"}
    while True:
        response = await client.get("/events", params=params)
        seen += [item["_id"] for item in response.json()]
        cursor = response.headers.get("x-next-cursor")
        if cursor is None:
            break
        params["cursor"] = cursor
    assert sorted(seen) == sorted(f"e{i:02d}" for i in range(25))
    assert len(seen) == 25


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "abc"},
        {"limit": "100000"},
        {"from": "soon"},
        {"cursor": "@@@"},
        {"cursor": "bm9wZQ"},
    ],
)
async def test_bad_event_filters_are_400(client: httpx.AsyncClient, params: dict[str, str]) -> None:
    response = await client.get("/events", params=params)
    assert response.status_code == 400
    assert response.json()["error"].startswith(next(iter(params)))


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-apikey": "wrong"},
        {"authorization": "Bearer wrong"},
        {"authorization": "Basic " + API_KEY},
    ],
)
async def test_protected_routes_need_a_valid_key(app: Starlette, headers: dict[str, str]) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        for method, path in [("GET", "/events"), ("POST", "/usagebatch"), ("GET", "/config")]:
            response = await c.request(method, path, headers=headers)
            assert response.status_code == 401
            assert "API key" in response.json()["error"]


async def test_bearer_token_and_database_keys_are_accepted(app: Starlette, store: Store) -> None:
    key = generate_key()
    await store.add_api_key(name="t", key_hash=hash_key(key), prefix=display_prefix(key))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        assert (
            await c.get("/events", headers={"authorization": f"Bearer {API_KEY}"})
        ).status_code == 200
        assert (await c.get("/events", headers={"x-apikey": key})).status_code == 200


async def test_a_revoked_key_is_refused_by_the_running_app(
    settings: ServerSettings, config: SystemConfig, store: Store
) -> None:
    # Through the app's own cached KeyRing: after its refresh interval the revoked key's
    # hash must be gone from the set (a reload that merged instead of replaced keeps it).
    refresh_s = 0.2
    app = create_app(dataclasses.replace(settings, key_refresh_s=refresh_s), config, store)
    key, other = generate_key(), generate_key()
    async with app.router.lifespan_context(app):
        revoked = await store.add_api_key(name="t", key_hash=hash_key(key), prefix="p")
        await store.add_api_key(name="u", key_hash=hash_key(other), prefix="q")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            assert (await c.get("/events", headers={"x-apikey": key})).status_code == 200
            assert (await c.get("/events", headers={"x-apikey": other})).status_code == 200
            await store.revoke_api_key(revoked.id)
            await asyncio.sleep(refresh_s * 1.5)
            assert (await c.get("/events", headers={"x-apikey": key})).status_code == 401
            assert (await c.get("/events", headers={"x-apikey": other})).status_code == 200
            await asyncio.sleep(refresh_s * 1.5)
            assert (await c.get("/events", headers={"x-apikey": key})).status_code == 401


async def test_public_routes_need_no_key(app: Starlette) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        assert (await c.get("/ping")).json() == {"status": "ok"}
        assert (await c.get("/health")).json() == {"status": "ok", "database": "ok"}
        info = (await c.get("/")).json()
        assert info["name"] == "meterd"
        docs = await c.get("/docs")
        assert docs.status_code == 200 and "swagger-ui" in docs.text
        assert (await c.get("/docs/static/swagger-ui-bundle.js")).status_code == 200
        assert (await c.get("/openapi.json")).json()["openapi"] == "3.1.0"


async def test_unknown_route_and_wrong_method_are_json_4xx(client: httpx.AsyncClient) -> None:
    missing = await client.get("/nope")
    assert missing.status_code == 404
    assert missing.json()["error"] == "Not Found"
    wrong = await client.get("/usagebatch")
    assert wrong.status_code == 405
    assert "error" in wrong.json()


async def test_config_is_served_with_secrets_redacted(client: httpx.AsyncClient) -> None:
    body = (await client.get("/config")).json()
    assert body["events"]["api.calls"] == {"op": "sum"}
    assert body["periods"] == ["hourly", "daily", "weekly", "monthly"]
    [hook] = body["webhooks"]
    assert hook["url"] == "http://127.0.0.1:9/hook"
    assert "whsec_" not in str(body)
    assert hook["secrets"] == ["********"]


def test_openapi_documents_every_route(app: Starlette) -> None:
    documented = {(op.method.upper(), op.path) for op in OPERATIONS}
    for route in app.routes:
        if isinstance(route, Mount):
            continue
        assert isinstance(route, Route)
        # Not JSON API routes: the document itself, its page, Prometheus text, the console.
        if route.path in ("/openapi.json", "/docs", "/docs/", "/metrics", "/console"):
            continue
        path = route.path.replace(":path}", "}")
        for method in route.methods or ():
            if method != "HEAD":
                assert (method, path) in documented


async def test_ingest_routes_refuse_other_methods_naming_post(client: httpx.AsyncClient) -> None:
    for path in ("/usage/api.calls", "/usagebatch"):
        wrong = await client.get(path)
        assert wrong.status_code == 405
        assert wrong.headers["allow"] == "POST"
        assert wrong.json() == {"error": "Method Not Allowed", "path": path}
