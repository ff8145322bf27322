"""Fixtures shared by every test layer: a config, a real store, an app and a client."""

from __future__ import annotations

import contextlib
import functools
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import psycopg
import pytest
from starlette.applications import Starlette

from meterd.config.model import EventTypeConfig, PeriodConfig, SystemConfig, WebhookConfig
from meterd.http.app import create_app
from meterd.settings import ServerSettings
from meterd.storage.base import Store
from meterd.storage.postgres.store import PostgresStore
from meterd.storage.sqlite.store import SQLiteStore

POSTGRES_URL = os.environ.get(
    "METERD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
# CI sets this: there, a missing PostgreSQL is a failure, not a skip.
POSTGRES_REQUIRED = os.environ.get("METERD_TEST_REQUIRE_POSTGRES") == "1"

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


@functools.cache
def postgres_problem() -> str | None:
    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
    except psycopg.Error as error:
        return f"PostgreSQL is not reachable at {POSTGRES_URL}: {error}".strip()
    return None


def require_postgres() -> None:
    """Skip the calling test when PostgreSQL is not reachable (fail instead in CI)."""
    problem = postgres_problem()
    if problem is not None:
        if POSTGRES_REQUIRED:
            pytest.fail(problem)
        pytest.skip(problem + " (PostgreSQL tests skipped)")


@contextlib.contextmanager
def postgres_schema() -> Iterator[str]:
    """A PostgreSQL URL whose tables live in a fresh schema, dropped afterwards."""
    schema = f"meterd_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}".encode())
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE".encode())


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL URL whose tables live in a fresh schema, dropped afterwards."""
    require_postgres()
    with postgres_schema() as url:
        yield url


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that uses a store runs on both backends; a test marked `ingest_process`
    also on SQLite with ingest transactions in a process of their own, as `meterd serve`
    runs them."""
    if "store" in metafunc.fixturenames:
        backends = ["sqlite", "postgresql"]
        if metafunc.definition.get_closest_marker("ingest_process"):
            backends.append("sqlite-ingest-process")
        metafunc.parametrize("store", backends, indirect=True)


@pytest.fixture
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "postgresql":
        return PostgresStore(request.getfixturevalue("postgres_url"))
    path = str(tmp_path / "meterd.db")
    return SQLiteStore(path, ingest_process=request.param == "sqlite-ingest-process")


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


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    problem = postgres_problem.cache_info().currsize and postgres_problem()
    if problem:
        terminalreporter.write_line(
            f"NOTE: the PostgreSQL tests were SKIPPED: {problem}", yellow=True, bold=True
        )
