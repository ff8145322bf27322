"""Void, amend, revisions and late events through the app, on both backends."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import httpx

from meterd.storage.base import Store
from tests.conftest import API_KEY, make_config

JAN = "2025-01-10T10:00:00Z"


async def send(client: httpx.AsyncClient, customer: str, value: float, at: str, id: str) -> None:
    body = {"customerId": customer, "value": value, "timestamp": at, "id": id}
    response = await client.post("/usage/api.calls", json=body)
    assert response.status_code == 201, response.text


async def trigger(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.post("/aggregations/trigger")
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


async def record(client: httpx.AsyncClient, record_id: str) -> dict[str, Any]:
    customer = record_id.split("_")[0]
    listed = await client.get("/aggregations", params={"customerId": customer, "limit": "1000"})
    found: dict[str, Any] = {r["_id"]: r for r in listed.json()}[record_id]
    return found


async def messages(store: Store, record_id: str) -> list[dict[str, Any]]:
    rows = await store.list_deliveries(status=None, limit=1000, before_id=None)
    return [json.loads(row.payload) for row in reversed(rows) if row.aggregation_id == record_id]


async def test_void_takes_an_event_out_of_every_total(client: httpx.AsyncClient) -> None:
    await send(client, "cv", 5, JAN, "v-1")
    await send(client, "cv", 7, JAN, "v-2")
    response = await client.post("/events/v-1/void", json={"reason": "duplicate"})
    assert response.status_code == 200, response.text
    voided = response.json()
    assert (voided["id"], voided["status"], voided["reason"]) == ("v-1", "voided", "duplicate")
    assert voided["voidedBy"] == {"name": "METERD_API_KEYS", "prefix": API_KEY[:9]}
    # Voiding again answers the same, whatever the new reason.
    again = await client.post("/events/v-1/void", json={"reason": "other"})
    assert (again.status_code, again.json()) == (200, voided)

    usage = await client.get("/customers/cv/usage", params={"period": "monthly", "at": JAN})
    assert (usage.json()["events"], usage.json()["eventCount"]) == ({"api.calls": 7}, 1)
    listed = await client.get("/events", params={"customerId": "cv"})
    assert [e["_id"] for e in listed.json()] == ["v-2"]
    everything = await client.get("/events", params={"customerId": "cv", "includeVoided": "true"})
    assert {e["_id"]: e["status"] for e in everything.json()} == {"v-1": "voided", "v-2": "active"}
    behind = await client.get("/aggregations/cv_monthly_202501/events")
    assert {e["_id"]: e["status"] for e in behind.json()} == {"v-1": "voided", "v-2": "active"}

    detail = await client.get("/events/v-1")
    assert detail.status_code == 200
    body = detail.json()
    assert (body["status"], body["voidReason"], body["voidedAt"]) == (
        "voided",
        "duplicate",
        voided["voidedAt"],
    )
    assert body["voidedBy"]["prefix"] == API_KEY[:9] and API_KEY not in detail.text
    await trigger(client)
    monthly = await record(client, "cv_monthly_202501")
    assert (monthly["events"], monthly["revision"]) == ({"api.calls": 7}, 1)


async def test_a_stored_key_is_named_in_the_correction(
    client: httpx.AsyncClient, store: Store
) -> None:
    from meterd.apikeys import display_prefix, generate_key, hash_key

    key = generate_key()
    await store.add_api_key(name="billing-app", key_hash=hash_key(key), prefix=display_prefix(key))
    await send(client, "ck", 1, JAN, "k-1")
    response = await client.post(
        "/events/k-1/void", json={"reason": "test"}, headers={"x-apikey": key}
    )
    assert response.status_code == 200, response.text
    assert response.json()["voidedBy"] == {"name": "billing-app", "prefix": display_prefix(key)}
    assert key not in (await client.get("/events/k-1")).text


async def test_amend_replaces_an_event_once(client: httpx.AsyncClient) -> None:
    await send(client, "ca", 5, JAN, "a-1")
    body = {"reason": "wrong value", "value": 50, "metadata": {"fixed": True}}
    response = await client.post("/events/a-1/amend", json=body, headers={"Idempotency-Key": "k1"})
    assert response.status_code == 201, response.text
    amended = response.json()
    assert (amended["amends"], amended["value"], amended["customerId"]) == ("a-1", 50, "ca")
    assert (amended["timestamp"], amended["metadata"], amended["duplicate"]) == (
        "2025-01-10T10:00:00.000Z",
        {"fixed": True},
        False,
    )
    new_id = amended["id"]
    assert new_id != "a-1"
    # A retry with the same key is harmless; without it the event is voided: 409.
    retry = await client.post("/events/a-1/amend", json=body, headers={"Idempotency-Key": "k1"})
    assert (retry.status_code, retry.json()["id"], retry.json()["duplicate"]) == (201, new_id, True)
    conflict = await client.post("/events/a-1/amend", json=body)
    assert conflict.status_code == 409, conflict.text
    # Voiding an amended event is refused too: void the replacement instead.
    assert (await client.post("/events/a-1/void", json={"reason": "x"})).status_code == 409
    original = (await client.get("/events/a-1")).json()
    assert (original["status"], original["amendedBy"]) == ("voided", new_id)
    replacement = (await client.get(f"/events/{new_id}")).json()
    assert replacement["amendKey"] == {"name": "METERD_API_KEYS", "prefix": API_KEY[:9]}
    assert (replacement["status"], replacement["amends"], replacement["value"]) == (
        "active",
        "a-1",
        50,
    )
    usage = await client.get("/customers/ca/usage", params={"period": "monthly", "at": JAN})
    assert usage.json()["events"] == {"api.calls": 50}
    # The key belongs to a-1's amendment: using it on another event is a conflict.
    await send(client, "ca", 1, JAN, "a-2")
    reused = await client.post("/events/a-2/amend", json=body, headers={"Idempotency-Key": "k1"})
    assert reused.status_code == 409 and "Idempotency-Key" in reused.json()["error"]


async def test_amend_moves_an_event_between_customers_and_periods(
    client: httpx.AsyncClient,
) -> None:
    await send(client, "cm", 3, JAN, "m-1")
    body = {"reason": "wrong customer", "customerId": "cm2", "timestamp": "2025-02-03T00:00:00Z"}
    response = await client.post("/events/m-1/amend", json=body)
    assert response.status_code == 201, response.text
    jan = await client.get("/customers/cm/usage", params={"period": "monthly", "at": JAN})
    feb = await client.get(
        "/customers/cm2/usage", params={"period": "monthly", "at": "2025-02-03T00:00:00Z"}
    )
    assert (jan.json()["eventCount"], feb.json()["events"]) == (0, {"api.calls": 3})


async def test_corrections_racing_on_one_event_one_wins(client: httpx.AsyncClient) -> None:
    await send(client, "cr", 1, JAN, "r-1")
    answers = await asyncio.gather(
        *(
            client.post("/events/r-1/amend", json={"reason": f"race {n}", "value": 10 + n})
            for n in range(4)
        ),
        client.post("/events/r-1/void", json={"reason": "race void"}),
    )
    codes = sorted(a.status_code for a in answers)
    winners = [a for a in answers if a.status_code in (200, 201)]
    assert len(winners) == 1 and codes.count(409) == 4, [a.text for a in answers]
    usage = await client.get("/customers/cr/usage", params={"period": "monthly", "at": JAN})
    want = 0 if winners[0].status_code == 200 else winners[0].json()["value"]
    assert usage.json()["events"].get("api.calls", 0) == want


async def test_bad_corrections_name_the_field(client: httpx.AsyncClient) -> None:
    await send(client, "cb", 5, JAN, "b-1")
    cases: list[tuple[str, Any, int, str]] = [
        ("void", {}, 400, "reason"),
        ("void", {"reason": "  "}, 400, "reason"),
        ("void", None, 400, "reason"),
        ("void", {"reason": 3}, 400, "reason"),
        ("amend", {"value": 3}, 400, "reason"),
        ("amend", {"reason": "r"}, 400, "nothing to change"),
        ("amend", {"reason": "r", "value": 5}, 400, "nothing to change"),
        ("amend", {"reason": "r", "value": "3"}, 400, "value"),
        ("amend", {"reason": "r", "value": True}, 400, "value"),
        ("amend", {"reason": "r", "timestamp": "yesterday"}, 400, "timestamp"),
        ("amend", {"reason": "r", "timestamp": "2999-01-01T00:00:00Z"}, 400, "timestamp"),
        ("amend", {"reason": "r", "metadata": [1]}, 400, "metadata"),
        ("amend", {"reason": "r", "customerId": ""}, 400, "customerId"),
        ("amend", [1], 400, "object"),
    ]
    for action, body, status, named in cases:
        content = b"" if body is None else json.dumps(body).encode()
        response = await client.post(f"/events/b-1/{action}", content=content)
        assert response.status_code == status, (action, body, response.text)
        assert named in response.json()["error"], (action, body, response.text)
    for action in ("void", "amend"):
        missing = await client.post(f"/events/nope/{action}", json={"reason": "r", "value": 1})
        assert missing.status_code == 404, missing.text
    assert (await client.get("/events/nope")).status_code == 404
    assert (await client.get("/events", params={"includeVoided": "maybe"})).status_code == 400
    assert (await client.get("/aggregations/nope_daily_20250101/revisions")).status_code == 404
    # Nothing of it changed the event.
    assert (await client.get("/events/b-1")).json()["status"] == "active"


async def test_corrections_and_late_events_revise_closed_records(
    client: httpx.AsyncClient, store: Store
) -> None:
    await send(client, "cl", 5, JAN, "l-1")
    await send(client, "cl", 7, JAN, "l-2")
    assert (await trigger(client))["closed"] > 0
    monthly = "cl_monthly_202501"
    first = await record(client, monthly)
    assert (first["status"], first["revision"], first["events"]) == ("closed", 1, {"api.calls": 12})

    await client.post("/events/l-1/void", json={"reason": "duplicate"})
    await send(client, "cl", 100, "2025-01-20T00:00:00Z", "l-3")
    counts = await trigger(client)
    assert counts["revised"] >= 1
    second = await record(client, monthly)
    assert (second["revision"], second["events"], second["eventCount"]) == (
        2,
        {"api.calls": 107},
        2,
    )
    assert (await trigger(client))["revised"] == 0
    revisions = (await client.get(f"/aggregations/{monthly}/revisions")).json()
    assert [(r["revision"], r["events"]) for r in revisions] == [
        (1, {"api.calls": 12}),
        (2, {"api.calls": 107}),
    ]
    sent = await messages(store, monthly)
    assert [m["type"] for m in sent] == ["aggregation.completed", "aggregation.adjusted"]
    adjusted = sent[1]
    assert adjusted["data"]["revision"] == 2
    assert adjusted["data"]["events"] == {"api.calls": 107}
    assert adjusted["data"]["previous"] == {
        "events": {"api.calls": 12},
        "eventCounts": {"api.calls": 2},
        "eventCount": 2,
    }
    assert adjusted["data"]["aggregationId"] == monthly and adjusted["customerId"] == "cl"

    # A late event for a customer with no record in a closed period: its first record.
    await send(client, "cn", 4, JAN, "n-1")
    await trigger(client)
    new = await record(client, "cn_monthly_202501")
    assert (new["status"], new["revision"], new["events"]) == ("closed", 1, {"api.calls": 4})
    assert [m["type"] for m in await messages(store, "cn_monthly_202501")] == [
        "aggregation.completed"
    ]
    # Voiding everything of a closed record is a revision with nothing in it.
    await client.post("/events/n-1/void", json={"reason": "test customer"})
    await trigger(client)
    emptied = await record(client, "cn_monthly_202501")
    assert (emptied["revision"], emptied["events"], emptied["eventCount"]) == (2, {}, 0)


async def test_max_event_age(store: Store) -> None:
    from meterd.http.app import create_app
    from meterd.settings import ServerSettings

    settings = ServerSettings(
        api_keys=(API_KEY,), max_body_bytes=100_000, close_interval_s=None, delivery_poll_s=None
    )
    app = create_app(settings, make_config(max_event_age_ms=30 * 86_400_000), store)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t", headers={"x-apikey": API_KEY}
        ) as client:
            old = {"customerId": "co", "value": 1, "timestamp": "2020-01-01T00:00:00Z"}
            single = await client.post("/usage/api.calls", json=old)
            assert single.status_code == 422, single.text
            assert single.json()["maxEventAge"] == "30d" and "30d" in single.json()["error"]
            batch = await client.post("/usagebatch", json=[{"eventType": "api.calls", **old}])
            assert batch.status_code == 422
            assert "maxEventAge (30d)" in batch.json()["validationErrors"][0]["errors"][0]
            fresh = await client.post("/usage/api.calls", json={"customerId": "co", "value": 1})
            assert fresh.status_code == 201
            event_id = fresh.json()["id"]
            moved = await client.post(
                f"/events/{event_id}/amend", json={"reason": "r", "timestamp": old["timestamp"]}
            )
            assert moved.status_code == 422 and "maxEventAge" in moved.json()["error"]
            config = (await client.get("/config")).json()
            assert config["maxEventAge"] == "30d"


async def test_an_open_record_has_no_revisions_yet(client: httpx.AsyncClient) -> None:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    await send(client, "co", 3, now, "o-1")
    await trigger(client)
    record_id = f"co_monthly_{now[:4]}{now[5:7]}"
    live = await record(client, record_id)
    assert (live["status"], live["events"]) == ("open", {"api.calls": 3})
    # Never sent, so never revised: revision 1 is the record as its period closes.
    response = await client.get(f"/aggregations/{record_id}/revisions")
    assert (response.status_code, response.json()) == (200, [])


async def test_a_voided_event_leaves_queries_and_entitlements(client: httpx.AsyncClient) -> None:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    limits = {"api.calls": {"period": "monthly", "limit": 10}}
    assert (await client.put("/customers/cq", json={"plan": None, "limits": limits})).is_success
    await send(client, "cq", 4, now, "q-1")
    await send(client, "cq", 8, now, "q-2")

    async def totals() -> tuple[Any, Any, Any]:
        query = await client.get("/usage/query", params={"meter": "api.calls", "customerId": "cq"})
        assert query.status_code == 200, query.text
        entitled = await client.get("/customers/cq/entitlements/api.calls")
        assert entitled.status_code == 200, entitled.text
        body = entitled.json()
        return [row["value"] for row in query.json()["data"]], body["usage"], body["hasAccess"]

    assert await totals() == ([12], 12, False)
    assert (await client.post("/events/q-2/void", json={"reason": "dup"})).status_code == 200
    assert await totals() == ([4], 4, True)
