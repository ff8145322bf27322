"""Portal tokens: issued by the API, hashed at rest, scoped to one customer and its meters."""

from __future__ import annotations

import csv
import io
import json

import httpx
import pytest

from meterd.config.portal import PortalConfig
from meterd.errors import PortalLinkInvalid
from meterd.http.app import create_app
from meterd.ingest import NewEvent
from meterd.portal_tokens import hash_token, issue_portal_token, portal_grant
from meterd.settings import ServerSettings
from meterd.storage.base import Store
from meterd.timeutil import now_ms, parse_iso_ms
from tests.conftest import API_KEY, make_config

METERS = ("api.calls", "storage.bytes", "response.time.ms")


async def seed(store: Store) -> None:
    now = now_ms()
    await store.ingest(
        [
            NewEvent("a1", "api.calls", "alice", 3, None, now, now),
            NewEvent("a2", "storage.bytes", "alice", 555555, None, now, now),
            NewEvent("b1", "api.calls", "bob", 987654, None, now, now),
            NewEvent("b2", "storage.bytes", "bob", 876543, None, now, now),
        ]
    )


async def issue(client: httpx.AsyncClient, **body: object) -> dict[str, str]:
    response = await client.post("/portal/tokens", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, str] = response.json()
    return result


async def test_a_token_reads_only_its_customer_and_meters(
    client: httpx.AsyncClient, store: Store
) -> None:
    await seed(store)
    issued = await issue(client, customerId="alice", meters=["api.calls"])
    assert issued["url"] == "http://meterd.test/portal/" + issued["token"]
    path = "/portal/" + issued["token"]
    anonymous = httpx.AsyncClient(transport=client._transport, base_url="http://meterd.test")
    data = (await anonymous.get(path + "/usage.json")).json()
    assert data["customerId"] == "alice"
    assert data["meters"] == [{"meter": "api.calls", "value": 3, "events": 1}]
    assert all(set(h["values"]) <= {"api.calls"} for h in data["history"])
    assert data["history"][-1]["values"] == {"api.calls": 3}
    page = await anonymous.get(path)
    assert page.status_code == 200
    assert "alice" in page.text and "bob" not in page.text
    # Numbers of six digits: no timestamp on the page can hold them by chance.
    for number in ("987654", "987,654", "555555", "555,555", "876543", "876,543"):
        assert number not in page.text
    assert "storage.bytes" not in page.text
    rows = list(csv.reader(io.StringIO((await anonymous.get(path + "/usage.csv")).text)))
    assert rows[0] == [
        "customerId",
        "periodKey",
        "periodStart",
        "periodEnd",
        "meter",
        "value",
        "events",
    ]
    assert {row[0] for row in rows[1:]} == {"alice"}
    assert {row[4] for row in rows[1:]} == {"api.calls"}
    # Without meters, every configured meter of that customer, and still nobody else's.
    everything = await issue(client, customerId="bob")
    data = (await anonymous.get("/portal/" + everything["token"] + "/usage.json")).json()
    assert [m["meter"] for m in data["meters"]] == list(METERS)
    assert data["meters"][0]["value"] == 987654


async def test_tokens_are_stored_hashed(client: httpx.AsyncClient, store: Store) -> None:
    issued = await issue(client, customerId="alice")
    assert await store.get_portal_token(issued["token"]) is None
    record = await store.get_portal_token(hash_token(issued["token"]))
    assert record is not None and record.customer_id == "alice"


async def test_expiry_defaults_to_an_hour_and_is_capped_at_30_days(
    client: httpx.AsyncClient,
) -> None:
    before = now_ms()
    issued = await issue(client, customerId="alice")
    expires = parse_iso_ms(issued["expiresAt"])
    assert before + 3_600_000 <= expires <= now_ms() + 3_600_000
    month = await issue(client, customerId="alice", expiresIn="30d")
    assert parse_iso_ms(month["expiresAt"]) >= before + 30 * 86_400_000
    seconds = await issue(client, customerId="alice", expiresIn=60)
    assert parse_iso_ms(seconds["expiresAt"]) <= now_ms() + 60_000
    for bad in ("31d", "0s", "soon", 0, 10**12):
        response = await client.post(
            "/portal/tokens", json={"customerId": "alice", "expiresIn": bad}
        )
        assert response.status_code == 400, bad
        assert response.json()["field"] == "expiresIn"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "customerId"),
        ({"customerId": ""}, "customerId"),
        ({"customerId": 5}, "customerId"),
        ({"customerId": "a", "meters": ["nope"]}, "meters"),
        ({"customerId": "a", "meters": []}, "meters"),
        ({"customerId": "a", "extra": 1}, "extra"),
    ],
)
async def test_bad_token_requests_name_the_field(
    client: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    response = await client.post("/portal/tokens", json=body)
    assert response.status_code == 400
    assert response.json()["field"] == field


@pytest.mark.parametrize(
    ("path", "body", "said"),
    [
        ("/portal/tokens", {"customerId": 5}, "customerId: must be a string (the customer id)"),
        ("/portal/tokens", {"customerId": "a", "meters": "api.calls"}, "meters: must be an array"),
        ("/portal/tokens", {"customerId": "a", "expiresIn": 1.5}, "expiresIn: must be a duration"),
        ("/portal/tokens", {"customerId": "a", "expire": "1h"}, "did you mean 'expiresIn'"),
        ("/portal/tokens", [], "the body must be a JSON object"),
        ("/portal/tokens", "{", "malformed JSON"),
        ("/portal/tokens/revoke", {"token": 7}, "token: must be a string (a portal token)"),
    ],
)
async def test_bad_token_bodies_are_said_in_the_clients_words(
    client: httpx.AsyncClient, path: str, body: object, said: str
) -> None:
    content = body if isinstance(body, str) else json.dumps(body)
    response = await client.post(path, content=content)
    assert response.status_code == 400
    detail = response.json()["error"]
    assert said in detail
    assert "Expected" not in detail and "`" not in detail, detail


async def test_issuing_and_revoking_need_an_api_key(client: httpx.AsyncClient) -> None:
    anonymous = httpx.AsyncClient(transport=client._transport, base_url="http://meterd.test")
    for path in ("/portal/tokens", "/portal/tokens/revoke"):
        response = await anonymous.post(path, json={"customerId": "alice"})
        assert response.status_code == 401


async def test_expired_and_revoked_tokens_get_401(client: httpx.AsyncClient, store: Store) -> None:
    await seed(store)
    anonymous = httpx.AsyncClient(transport=client._transport, base_url="http://meterd.test")
    expired = await issue_portal_token(
        store, customer_id="alice", meters=None, ttl_ms=1000, known_meters=METERS, now_ms=0
    )
    one = await issue(client, customerId="alice")
    two = await issue(client, customerId="alice")
    other = await issue(client, customerId="bob")
    assert (await anonymous.get("/portal/" + one["token"])).status_code == 200
    revoked = await client.post("/portal/tokens/revoke", json={"token": one["token"]})
    assert revoked.json() == {"revoked": 1}
    assert (await anonymous.get("/portal/" + two["token"])).status_code == 200
    revoked = await client.post("/portal/tokens/revoke", json={"customerId": "alice"})
    assert revoked.json() == {"revoked": 2}  # `two` and the expired one; `one` already was
    for token in (expired.token, one["token"], two["token"], "pt_unknown", "x" * 500):
        for suffix in ("", "/usage.json", "/usage.csv"):
            response = await anonymous.get("/portal/" + token + suffix)
            assert response.status_code == 401, (token, suffix)
            assert "alice" not in response.text
    assert (await anonymous.get("/portal/" + other["token"])).status_code == 200
    both = await client.post("/portal/tokens/revoke", json={"token": "a", "customerId": "b"})
    assert both.status_code == 400


async def test_grant_lists_only_configured_meters_it_was_given(store: Store) -> None:
    await store.open()
    try:
        issued = await issue_portal_token(
            store,
            customer_id="alice",
            meters=["storage.bytes", "storage.bytes"],
            ttl_ms=None,
            known_meters=METERS,
            now_ms=now_ms(),
        )
        grant = await portal_grant(store, token=issued.token, known_meters=METERS, now_ms=now_ms())
        assert grant.customer_id == "alice" and grant.meters == ("storage.bytes",)
        with pytest.raises(PortalLinkInvalid):
            await portal_grant(
                store, token=issued.token, known_meters=METERS, now_ms=grant.expires_ms
            )
    finally:
        await store.close()


async def test_portal_headers_allow_only_the_configured_frame_ancestors(
    client: httpx.AsyncClient,
) -> None:
    issued = await issue(client, customerId="alice")
    response = await client.get("/portal/" + issued["token"])
    csp = response.headers["content-security-policy"]
    assert "frame-ancestors 'self'" in csp and "unsafe-inline" not in csp
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "x-frame-options" not in response.headers


async def test_configured_frame_ancestors_reach_the_header(
    settings: ServerSettings, store: Store
) -> None:
    config = make_config(portal=PortalConfig(("https://app.example.com", "'self'")))
    app = create_app(settings, config, store)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://meterd.test", headers={"x-apikey": API_KEY}
        ) as client:
            issued = await issue(client, customerId="alice")
            response = await client.get("/portal/" + issued["token"])
    csp = response.headers["content-security-policy"]
    assert "frame-ancestors https://app.example.com 'self'" in csp
