"""Fixtures shared by every test layer: a config, a real store, an app and a client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from meterd.config.model import EventTypeConfig, PeriodConfig, SystemConfig, WebhookConfig
from meterd.http.app import create_app
from meterd.settings import ServerSettings
from meterd.storage.base import Store
from meterd.storage.sqlite.store import SQLiteStore

API_KEY = "mk_test_key"


def make_config(**overrides: object) -> SystemConfig:
    fields: dict[str, object] = {
        "periods": tuple(PeriodConfig(name) for name in ("hourly", "daily", "weekly", "monthly")),
        "events": {
            "api.calls": EventTypeConfig("sum"),
            "storage.bytes": EventTypeConfig("max"),
            "response.time.ms": EventTypeConfig("avg"),
        },
        "webhooks": (
            WebhookConfig(url="http://127.0.0.1:9/hook", secrets=("whsec_c2VjcmV0LXRlc3Qta2V5",)),
        ),
        "max_batch_size": 100,
        "source": "<tests>",
    }
    fields.update(overrides)
    return SystemConfig(**fields)  # type: ignore[arg-type]


@pytest.fixture
def config() -> SystemConfig:
    return make_config()


@pytest.fixture
def settings() -> ServerSettings:
    # No scheduler and no delivery worker: tests close periods and deliver explicitly.
    return ServerSettings(
        api_keys=(API_KEY,),
        max_body_bytes=1_000_000,
        close_interval_s=None,
        delivery_poll_s=None,
    )


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return SQLiteStore(str(tmp_path / "meterd.db"))


@pytest.fixture
async def open_store(store: Store) -> AsyncIterator[Store]:
    """The store, opened, for tests that use it without the app."""
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def app(
    settings: ServerSettings, config: SystemConfig, store: Store
) -> AsyncIterator[Starlette]:
    application = create_app(settings, config, store)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://meterd.test", headers={"x-apikey": API_KEY}
    ) as http:
        yield http
