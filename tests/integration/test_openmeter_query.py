"""Meter and portal queries under /api/v1 over raw HTTP.

On meterd's usage query (§7) and portal token (§11) services.
"""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount, Route

from meterd.http.docs import OPENMETER_OPERATIONS
from tests.conftest import API_KEY


@pytest.fixture(autouse=True)
def bearer_only(client: httpx.AsyncClient) -> None:
    client.headers.pop("x-apikey")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_meter_query_json_csv_minutes_and_refusals(client: httpx.AsyncClient) -> None:
    native = {"customerId": "cus_1", "value": 2, "timestamp": "2025-01-15T10:00:00Z"}
    assert (
        await client.post("/usage/api.calls", json=native, headers=bearer(API_KEY))
    ).status_code == 201
    params = {"from": "2025-01-15T00:00:00Z", "to": "2025-01-16T00:00:00Z", "windowSize": "HOUR"}
    url = "/api/v1/meters/api_calls/query"
    answer = await client.get(url, params=params, headers=bearer(API_KEY))
    assert answer.status_code == 200
    assert answer.json()["windowSize"] == "HOUR"
    assert [(r["windowStart"], r["value"]) for r in answer.json()["data"]] == [
        ("2025-01-15T10:00:00.000Z", 2)
    ]
    csv = await client.get(url, params=params, headers={**bearer(API_KEY), "Accept": "text/csv"})
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[0] == "window_start,window_end,subject,value"
    minute = await client.get(
        url, params={**params, "windowSize": "MINUTE"}, headers=bearer(API_KEY)
    )
    assert [(r["windowStart"], r["windowEnd"], r["value"]) for r in minute.json()["data"]] == [
        ("2025-01-15T10:00:00.000Z", "2025-01-15T10:01:00.000Z", 2)
    ]
    # Without `from`, the range starts at the first event: too many minutes.
    too_many = await client.get(url, params={"windowSize": "MINUTE"}, headers=bearer(API_KEY))
    assert too_many.status_code == 400
    assert too_many.json()["field"] == "windowSize"
    ne = await client.get(
        url,
        params={"advancedMeterGroupByFilters": '{"model": {"$ne": "x"}}'},
        headers=bearer(API_KEY),
    )
    assert ne.status_code == 400  # api.calls has no groupBy keys


async def test_meter_query_of_an_unknown_meter_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/meters/nope/query", headers=bearer(API_KEY))
    assert response.status_code == 404
    assert response.json()["instance"] == "/api/v1/meters/nope/query"


async def test_meter_query_needs_the_api_key(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/meters/api_calls/query", headers=bearer("wrong"))
    assert response.status_code == 401


async def test_portal_token_issue_use_and_invalidate(client: httpx.AsyncClient) -> None:
    created = await client.post(
        "/api/v1/portal/tokens",
        json={"subject": "cus_1", "allowedMeterSlugs": ["api_calls"]},
        headers=bearer(API_KEY),
    )
    assert created.status_code == 200  # OpenMeter's SDK takes only 200 here
    body = created.json()
    assert body["subject"] == "cus_1"
    assert body["allowedMeterSlugs"] == ["api_calls"]
    assert body["expired"] is False
    token = body["token"]
    allowed = await client.get("/api/v1/portal/meters/api_calls/query", headers=bearer(token))
    assert allowed.status_code == 200
    other = await client.get("/api/v1/portal/meters/storage_bytes/query", headers=bearer(token))
    assert other.status_code == 404
    # A portal token is not an API key.
    as_key = await client.get("/api/v1/meters", headers=bearer(token))
    assert as_key.status_code == 401
    invalidated = await client.post(
        "/api/v1/portal/tokens/invalidate", json={"id": body["id"]}, headers=bearer(API_KEY)
    )
    assert invalidated.status_code == 204
    gone = await client.get("/api/v1/portal/meters/api_calls/query", headers=bearer(token))
    assert gone.status_code == 401
    assert gone.headers["content-type"] == "application/problem+json"


async def test_portal_token_errors(client: httpx.AsyncClient) -> None:
    unknown_meter = await client.post(
        "/api/v1/portal/tokens",
        json={"subject": "cus_1", "allowedMeterSlugs": ["nope"]},
        headers=bearer(API_KEY),
    )
    assert unknown_meter.status_code == 400
    assert unknown_meter.json()["field"] == "allowedMeterSlugs"
    empty = await client.post(
        "/api/v1/portal/tokens", json={"subject": ""}, headers=bearer(API_KEY)
    )
    assert empty.status_code == 400
    no_token = await client.get("/api/v1/portal/meters/api_calls/query")
    assert no_token.status_code == 401
    nothing = await client.post(
        "/api/v1/portal/tokens/invalidate", json={}, headers=bearer(API_KEY)
    )
    assert nothing.status_code == 400


async def test_portal_token_creation_needs_the_api_key(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/portal/tokens", json={"subject": "cus_1"}, headers=bearer("portal-token")
    )
    assert response.status_code == 401


def test_openapi_documents_every_api_v1_route(app: Starlette) -> None:
    documented = {(op.method.upper(), op.path) for op in OPENMETER_OPERATIONS}
    found: set[tuple[str, str]] = set()
    [api] = [r for r in app.routes if isinstance(r, Mount) and r.path == "/api/v1"]
    pending: list[tuple[str, BaseRoute]] = [(api.path, api)]
    while pending:
        prefix, route = pending.pop()
        if isinstance(route, Mount):
            pending.extend(
                (prefix + route.path if route is not api else prefix, r) for r in route.routes
            )
        elif isinstance(route, Route):
            found.update(
                (method, prefix + route.path) for method in route.methods or () if method != "HEAD"
            )
    assert found == documented


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"subject": 5}, "subject: must be a string (the customer id)"),
        ({}, "subject: required"),
        (
            {"subject": "cus_1", "allowedMeterSlugs": "api_calls"},
            "allowedMeterSlugs: must be an array of meter slugs (strings)",
        ),
        ([], "the body must be a JSON object"),
    ],
)
async def test_portal_token_bodies_of_the_wrong_type_are_said_plainly(
    client: httpx.AsyncClient, body: object, problem: str
) -> None:
    response = await client.post("/api/v1/portal/tokens", json=body, headers=bearer(API_KEY))
    assert response.status_code == 400
    assert response.json()["detail"] == problem
    broken = await client.post(
        "/api/v1/portal/tokens", content=b'{"subject": ', headers=bearer(API_KEY)
    )
    assert broken.json()["detail"] == "malformed JSON: the body ends before the JSON does"


async def test_a_filter_that_is_not_json_is_said_plainly(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/api/v1/meters/api_calls/query",
        params={"advancedMeterGroupByFilters": '{"model": '},
        headers=bearer(API_KEY),
    )
    assert response.status_code == 400
    assert response.json()["detail"] == (
        "advancedMeterGroupByFilters: not JSON;"
        ' expected a JSON object such as {"model": {"$eq": "gpt-4o"}}'
    )


async def test_openapi_says_what_differs_from_openmeter(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    [tag] = [t for t in document["tags"] if t["name"] == "OpenMeter-compatible"]
    assert "differs" in tag["description"] and "Coming from OpenMeter" in tag["description"]
    operations = [
        (path, operation)
        for path, methods in document["paths"].items()
        if path.startswith("/api/v1/")
        for operation in methods.values()
    ]
    assert len(operations) == len(OPENMETER_OPERATIONS)
    assert all(operation["tags"] == ["OpenMeter-compatible"] for _, operation in operations)
    query = document["paths"]["/api/v1/meters/{idOrSlug}/query"]["get"]
    params = {p["name"]: p for p in query["parameters"]}
    assert params["windowSize"]["schema"]["enum"] == ["MINUTE", "HOUR", "DAY", "MONTH"]
    assert (
        "$ne and $nin keep events without the key"
        in params["advancedMeterGroupByFilters"]["description"]
    )
    assert {"subject", "filterCustomerId", "groupBy", "from", "to"} <= params.keys()
    assert "`to` is exclusive" in query["description"]
    ingest = document["paths"]["/api/v1/events"]["post"]
    assert "configured meter's event type" in ingest["description"]
