"""A full write queue answers 503 with Retry-After; what was accepted is stored whole."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import psycopg
import pytest

from meterd.config.model import SystemConfig
from meterd.errors import Overloaded
from meterd.http.app import create_app
from meterd.ingest import NewEvent
from meterd.settings import ServerSettings
from meterd.storage.base import EventQuery, Store
from meterd.storage.postgres.store import PostgresStore
from meterd.storage.sqlite.store import SQLiteStore
from tests.conftest import API_KEY

LIMIT = 100


def batch(name: str, size: int = 50) -> list[NewEvent]:
    now = 1_736_935_200_000
    return [NewEvent(f"{name}-{i}", "api.calls", "c", 1.0, None, now, now) for i in range(size)]


@asynccontextmanager
async def writes_blocked(store: Store, postgres_url: str | None) -> AsyncIterator[None]:
    """Hold the database's write path for a moment, as a slow disk or a lock would."""
    if isinstance(store, SQLiteStore):
        blocked = asyncio.ensure_future(store.writer.call(lambda conn: time.sleep(0.5)))
        await asyncio.sleep(0.05)
        yield
        await blocked
        return
    assert postgres_url is not None
    async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
        await conn.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        yield
        await asyncio.sleep(0.5)
        await conn.commit()


@pytest.fixture(params=["sqlite", "postgresql"])
async def small_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Store, str | None]]:
    url = None
    store: Store
    if request.param == "sqlite":
        store = SQLiteStore(str(tmp_path / "m.db"), max_pending_events=LIMIT)
    else:
        url = request.getfixturevalue("postgres_url")
        store = PostgresStore(url, max_pending_events=LIMIT)
    await store.open()
    try:
        yield store, url
    finally:
        await store.close()


async def test_a_full_queue_refuses_and_keeps_what_it_took(
    small_store: tuple[Store, str | None],
) -> None:
    store, url = small_store
    async with writes_blocked(store, url):
        calls = [asyncio.ensure_future(store.ingest(batch(f"b{n}"))) for n in range(5)]
        await asyncio.sleep(0.1)
    results = await asyncio.gather(*calls, return_exceptions=True)
    refused = [n for n, r in enumerate(results) if isinstance(r, Overloaded)]
    accepted = [n for n, r in enumerate(results) if isinstance(r, list)]
    assert len(accepted) == 2
    assert len(refused) == 3
    stored = {e.id.split("-")[0] for e in await store.list_events(EventQuery(limit=1000))}
    assert stored == {f"b{n}" for n in accepted}
    # Once the queue drained, the refused batches go in.
    for n in refused:
        assert await store.ingest(batch(f"b{n}")) == [True] * 50


async def test_overload_is_a_503_with_retry_after(
    small_store: tuple[Store, str | None], config: SystemConfig
) -> None:
    store, url = small_store
    settings = ServerSettings(api_keys=(API_KEY,), close_interval_s=None, delivery_poll_s=None)
    app = create_app(settings, config, store)
    transport = httpx.ASGITransport(app=app)
    body = [{"eventType": "api.calls", "customerId": "c", "value": 1}] * 60
    async with httpx.AsyncClient(
        transport=transport, base_url="http://t", headers={"x-apikey": API_KEY}
    ) as client:
        async with writes_blocked(store, url):
            first = asyncio.ensure_future(client.post("/usagebatch", json=body))
            await asyncio.sleep(0.05)
            second = await client.post("/usagebatch", json=body)
        assert second.status_code == 503
        assert second.headers["retry-after"] == "1"
        assert "Retry" in second.json()["error"]
        assert (await first).status_code == 201
