"""A reused id: the same content is a quiet duplicate, other content a 409 (422 in a batch)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from meterd.errors import IdConflict
from meterd.ingest import NewEvent
from meterd.storage.base import EventQuery, Store
from meterd.storage.postgres.store import PostgresStore
from meterd.storage.sqlite.store import SQLiteStore
from meterd.timeutil import now_ms

pytestmark = pytest.mark.ingest_process

T0 = "2025-01-15T10:00:00.000Z"
T0_MS = 1_736_935_200_000


def event(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"customerId": "cus_1", "value": 5, "id": "evt-1"}
    body.update(fields)
    return body


async def stored(store: Store) -> list[Any]:
    return await store.list_events(EventQuery(limit=1000))


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"value": 6}, "value"),
        ({"value": 5.000000000000001}, "value"),
        ({"customerId": "cus_2"}, "customerId"),
        ({"metadata": {"plan": "pro"}}, "metadata"),
        ({"timestamp": "2025-01-15T10:00:00.001Z"}, "timestamp"),
    ],
)
async def test_an_id_reused_for_other_content_is_a_409_naming_the_id(
    client: httpx.AsyncClient, store: Store, change: dict[str, Any], named: str
) -> None:
    first = await client.post("/usage/api.calls", json=event(timestamp=T0))
    assert first.status_code == 201
    response = await client.post("/usage/api.calls", json=event(**{"timestamp": T0, **change}))
    assert response.status_code == 409
    body = response.json()
    assert body["id"] == "evt-1"
    assert body["field"] == "id"
    assert body["error"].startswith(f"id 'evt-1' was already used for a different event ({named}")
    [kept] = await stored(store)
    assert kept.value == 5 and kept.customer_id == "cus_1"


async def test_another_event_type_under_the_same_id_is_a_conflict(
    client: httpx.AsyncClient, store: Store
) -> None:
    assert (await client.post("/usage/api.calls", json=event())).status_code == 201
    response = await client.post("/usage/storage.bytes", json=event())
    assert response.status_code == 409
    assert "eventType differs" in response.json()["error"]


async def test_the_same_content_stays_a_duplicate_describing_the_stored_event(
    client: httpx.AsyncClient, store: Store
) -> None:
    sent = event(value=0.1, metadata={"a": 1, "b": [1, 2]}, timestamp=T0)
    first = (await client.post("/usage/api.calls", json=sent)).json()
    # Same content, written differently: key order, spacing, 0.1 as 1e-1.
    again = await client.post(
        "/usage/api.calls",
        content=b'{"id": "evt-1", "metadata": {"b": [1,2], "a": 1.0}, "value": 1e-1,'
        b' "customerId": "cus_1", "timestamp": 1736935200000}',
    )
    assert again.status_code == 201
    reply = again.json()
    assert reply["duplicate"] is True
    [kept] = await stored(store)
    assert reply == {**first, "duplicate": True}
    assert (reply["id"], reply["customerId"], reply["eventType"]) == (
        kept.id,
        kept.customer_id,
        kept.event_type,
    )


async def test_a_retry_without_timestamp_matches_the_arrival_time_it_got(
    client: httpx.AsyncClient, store: Store
) -> None:
    assert (await client.post("/usage/api.calls", json=event())).status_code == 201
    await asyncio.sleep(0.01)  # the retry arrives later
    retry = await client.post("/usage/api.calls", json=event())
    assert retry.status_code == 201
    assert retry.json()["duplicate"] is True
    [kept] = await stored(store)
    # A retry that sends the stored time is a duplicate too; any other time conflicts.
    same_time = await client.post("/usage/api.calls", json=event(timestamp=kept.ts_ms))
    assert same_time.json()["duplicate"] is True
    other = await client.post("/usage/api.calls", json=event(timestamp=kept.ts_ms - 1))
    assert other.status_code == 409


async def test_a_stored_client_timestamp_matches_a_retry_that_leaves_it_out(
    client: httpx.AsyncClient, store: Store
) -> None:
    assert (await client.post("/usage/api.calls", json=event(timestamp=T0))).status_code == 201
    retry = await client.post("/usage/api.calls", json=event())
    assert retry.status_code == 201 and retry.json()["duplicate"] is True


async def test_an_idempotency_key_reused_for_other_content_is_a_409(
    client: httpx.AsyncClient, store: Store
) -> None:
    headers = {"Idempotency-Key": "key-1"}
    body = {"customerId": "c", "value": 1}
    assert (await client.post("/usage/api.calls", json=body, headers=headers)).status_code == 201
    response = await client.post("/usage/api.calls", json={**body, "value": 2}, headers=headers)
    assert response.status_code == 409
    assert response.json()["field"] == "Idempotency-Key"
    assert response.json()["id"] == "key-1"


def batch_event(**fields: Any) -> dict[str, Any]:
    return {"eventType": "api.calls", **event(**fields)}


async def test_a_batch_reusing_an_id_is_a_422_for_that_index_and_stores_nothing(
    client: httpx.AsyncClient, store: Store
) -> None:
    assert (await client.post("/usage/api.calls", json=event(id="old"))).status_code == 201
    batch = [
        batch_event(id="new-1"),
        batch_event(id="old", value=99),
        batch_event(id="new-2"),
        batch_event(id="new-1", value=7),  # reused within the batch
        batch_event(id="old"),  # the same content: a duplicate, fine
    ]
    response = await client.post("/usagebatch", json=batch)
    assert response.status_code == 422
    body = response.json()
    assert [(p["index"], p["field"]) for p in body["validationErrors"]] == [(1, "id"), (3, "id")]
    assert (
        "'old' was already used for a different event (value differs)"
        in (body["validationErrors"][0]["errors"][0])
    )
    assert (body["validCount"], body["invalidCount"]) == (3, 2)
    assert [e.id for e in await stored(store)] == ["old"]


async def test_a_refused_request_does_not_block_others_in_the_same_commit(
    client: httpx.AsyncClient, store: Store
) -> None:
    assert (await client.post("/usage/api.calls", json=event(id="taken"))).status_code == 201
    responses = await asyncio.gather(
        *(
            client.post("/usage/api.calls", json=event(id=f"e{i}", value=i))
            if i % 5
            else client.post("/usage/api.calls", json=event(id="taken", value=-i - 1))
            for i in range(40)
        )
    )
    codes = [r.status_code for r in responses]
    assert codes == [201 if i % 5 else 409 for i in range(40)]
    assert len(await stored(store)) == 33


def _event(event_id: str, value: float, *, ts: int | None = None) -> NewEvent:
    now = now_ms()
    return NewEvent(event_id, "api.calls", "c", value, None, ts or now, now, ts is not None)


async def test_concurrent_requests_with_one_id_and_different_content_one_wins(
    open_store: Store, tmp_path: Any, request: pytest.FixtureRequest
) -> None:
    """Race-free: whatever the interleaving, one is stored (201) and the other refused (409).

    A second store on the same database stands for a second meterd process.
    """
    if isinstance(open_store, SQLiteStore):
        other: Store = SQLiteStore(open_store.path)
    else:
        assert isinstance(open_store, PostgresStore)
        other = PostgresStore(open_store.url)
    await other.open()
    try:
        for round_ in range(20):
            a = open_store if round_ % 2 else other
            b = other if round_ % 2 else open_store
            results = await asyncio.gather(
                a.ingest([_event(f"race-{round_}", 1)]),
                b.ingest([_event(f"race-{round_}", 2)]),
                a.ingest([_event(f"race-{round_}", 2)]),
                return_exceptions=True,
            )
            outcomes = [
                "stored" if r == [True] else "dup" if r == [False] else type(r).__name__
                for r in results
            ]
            stored_value = {
                e.value
                for e in await open_store.list_events(EventQuery(limit=1000))
                if e.id == f"race-{round_}"
            }
            assert len(stored_value) == 1
            winner = stored_value.pop()
            expected = {
                1: ["stored", "IdConflict", "IdConflict"],
                2: ["IdConflict", "stored", "dup"],
            }
            assert outcomes in (expected[1], expected[2], ["IdConflict", "dup", "stored"])
            assert (winner == 1) == (outcomes[0] == "stored")
    finally:
        await other.close()


async def test_a_conflict_error_lists_every_reused_id(open_store: Store) -> None:
    ts = T0_MS
    await open_store.ingest([_event("a", 1, ts=ts), _event("b", 1, ts=ts)])
    with pytest.raises(IdConflict) as caught:
        await open_store.ingest(
            [_event("c", 1, ts=ts), _event("a", 2, ts=ts), _event("b", 1, ts=ts + 1)]
        )
    assert caught.value.conflicts == [(1, "a", ["value"]), (2, "b", ["timestamp"])]
    assert {e.id for e in await open_store.list_events(EventQuery())} == {"a", "b"}


async def test_requests_committed_together_settle_as_some_serial_order(open_store: Store) -> None:
    """A request refused in a group commit frees the ids it would have taken."""
    for round_ in range(10):
        x, y = f"x{round_}", f"y{round_}"
        a, b, c = await asyncio.gather(
            open_store.ingest([_event(x, 1)]),
            open_store.ingest([_event(x, 2), _event(y, 2)]),
            open_store.ingest([_event(y, 3)]),
            return_exceptions=True,
        )
        values = {
            e.id: e.value
            for e in await open_store.list_events(EventQuery(limit=1000))
            if e.id in (x, y)
        }
        if a == [True]:  # a first: b is refused, and c takes y
            assert isinstance(b, IdConflict) and c == [True]
            assert values == {x: 1, y: 3}
        else:  # b first: a and c are refused
            assert isinstance(a, IdConflict) and isinstance(c, IdConflict)
            assert b == [True, True]
            assert values == {x: 2, y: 2}
