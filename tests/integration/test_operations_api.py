"""/metrics, redaction of webhook URLs, and redirects that never leave meterd's host."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from meterd.cli import main
from meterd.config.model import SystemConfig, WebhookConfig
from meterd.config.redact import REDACTED, redact_url
from meterd.errors import StorageUnavailable
from meterd.http.app import create_app
from meterd.settings import ServerSettings
from meterd.storage.base import Store
from meterd.storage.sqlite.store import SQLiteStore
from tests.conftest import API_KEY, make_config
from tests.integration.test_webhooks import close_one_day, no_pending, until
from tests.receiver import Receiver

SECRET_URL = "http://billing:hunter2@127.0.0.1:9/hook?token=tok_live_123&v=2"
SHOWN_URL = f"http://{REDACTED}@127.0.0.1:9/hook?token={REDACTED}&v={REDACTED}"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (SECRET_URL, SHOWN_URL),
        ("https://hooks.example.com/usage", "https://hooks.example.com/usage"),
        (
            "https://tok_abc@hooks.example.com:8443/u",
            f"https://{REDACTED}@hooks.example.com:8443/u",
        ),
        ("https://h.example/u?s3cr3t", f"https://h.example/u?{REDACTED}"),
        ("https://h.example/u#access_token=x", f"https://h.example/u#{REDACTED}"),
        ("http://[::1]:8080/h?k=v", f"http://[::1]:8080/h?k={REDACTED}"),
        ("http://h.example:99999/h", REDACTED),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def secret_url_config() -> SystemConfig:
    return make_config(webhooks=(WebhookConfig(url=SECRET_URL, secrets=("whsec_x",)),))


@asynccontextmanager
async def serving(
    store: Store, config: SystemConfig, **settings: object
) -> AsyncIterator[httpx.AsyncClient]:
    fields: dict[str, object] = {
        "api_keys": (API_KEY,),
        "close_interval_s": None,
        "delivery_poll_s": None,
    }
    fields.update(settings)
    app: Starlette = create_app(ServerSettings(**fields), config, store)  # type: ignore[arg-type]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://meterd.test", headers={"x-apikey": API_KEY}
        ) as client:
            yield client


async def test_config_and_deliveries_hide_url_credentials(store: Store) -> None:
    config = secret_url_config()
    async with serving(store, config) as client:
        shown = (await client.get("/config")).json()
        assert [hook["url"] for hook in shown["webhooks"]] == [SHOWN_URL]
        await close_one_day(store, config)
        listed = (await client.get("/deliveries")).text
        one = await client.get(f"/deliveries/{(await client.get('/deliveries')).json()[0]['id']}")
        for text in (shown.__repr__(), listed, one.text):
            assert "hunter2" not in text and "tok_live_123" not in text and "billing" not in text
        assert one.json()["url"] == SHOWN_URL


def test_cli_deliveries_hide_url_credentials(tmp_path: Path) -> None:
    async def close() -> None:
        store = SQLiteStore(str(tmp_path / "m.db"))
        await store.open()
        await close_one_day(store, secret_url_config())
        await store.close()

    asyncio.run(close())
    result = CliRunner().invoke(
        main, ["deliveries", "--db", f"sqlite:///{tmp_path / 'm.db'}"], env={"COLUMNS": "400"}
    )
    assert result.exit_code == 0, result.output
    assert "hunter2" not in result.output and "tok_live_123" not in result.output
    assert f"{REDACTED}@127.0.0.1:9/hook" in result.output


@pytest.mark.parametrize(
    "path", ["/docs/", "/events/", "/config/", "/deliveries/", "//evil.example"]
)
async def test_no_redirect_takes_its_host_from_the_request(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path, headers={"host": "evil.example"})
    location = response.headers.get("location", "")
    assert "evil.example" not in location
    assert not location.startswith(("http:", "https:", "//"))


async def test_docs_with_a_slash_leads_to_the_docs(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs/", headers={"host": "evil.example"})
    assert response.status_code == 307 and response.headers["location"] == "/docs"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


SINGLE = (("route", "/usage/{eventType}"),)
BATCH = (("route", "/usagebatch"),)


async def test_metrics_count_ingest_closes_deliveries_and_the_outbox(store: Store) -> None:
    with Receiver() as receiver:
        config = make_config(webhooks=(WebhookConfig(url=receiver.url, secrets=("whsec_x",)),))
        async with serving(store, config) as client:
            event = {"customerId": "c1", "value": 1, "id": "e1"}
            for _ in range(2):
                assert (await client.post("/usage/api.calls", json=event)).status_code == 201
            batch = [
                {"eventType": "api.calls", "customerId": "c1", "value": 1, "id": f"b{i}"}
                for i in range(3)
            ]
            assert (await client.post("/usagebatch", json=batch + batch[:1])).status_code == 201
            assert (await client.post("/usage/api.calls", json={"value": 1})).status_code == 400
            nokey = await client.post("/usagebatch", json=batch, headers={"x-apikey": "wrong"})
            assert nokey.status_code == 401
            await client.post(
                "/usage/api.calls",
                json={"customerId": "old", "value": 5, "timestamp": "2025-01-15T10:00:00Z"},
            )
            assert (await client.post("/aggregations/trigger")).status_code == 202
            await asyncio.sleep(0.01)
            pending = samples((await client.get("/metrics")).text)

        assert pending[("meterd_events_stored_total", SINGLE)] == 2
        assert pending[("meterd_events_duplicate_total", SINGLE)] == 1
        assert pending[("meterd_events_stored_total", BATCH)] == 3
        assert pending[("meterd_events_duplicate_total", BATCH)] == 1
        assert pending[("meterd_ingest_refused_total", (*SINGLE, ("status", "400")))] == 1
        assert pending[("meterd_ingest_refused_total", (*BATCH, ("status", "401")))] == 1
        assert pending[("meterd_ingest_latency_seconds_count", SINGLE)] == 4
        closed = pending[("meterd_records_closed_total", ())]
        assert closed >= 1
        assert pending[("meterd_outbox_pending", ())] == closed
        assert pending[("meterd_outbox_oldest_pending_age_seconds", ())] >= 0
        assert pending[("meterd_group_commit_events_count", ())] >= 1
        # Every event that reached the writer, duplicates included: 2 + 4 + 1.
        assert pending[("meterd_group_commit_events_sum", ())] == 7
        assert ("meterd_writer_queue_events", ()) in pending

        async with serving(store, config, delivery_poll_s=0.02) as client:
            await until(lambda: no_pending(store))
            await asyncio.sleep(0.05)
            delivered = samples((await client.get("/metrics")).text)
        # A new app, a new registry: counts start again from zero.
        assert delivered[("meterd_webhook_attempts_total", (("outcome", "delivered"),))] == closed
        assert delivered[("meterd_webhook_attempt_seconds_count", ())] == closed
        assert ("meterd_events_stored_total", SINGLE) not in delivered
        assert delivered[("meterd_outbox_pending", ())] == 0
        assert delivered[("meterd_outbox_oldest_pending_age_seconds", ())] == 0


async def test_metrics_need_the_key_unless_public(store: Store) -> None:
    config = make_config()
    async with serving(store, config) as client:
        assert (await client.get("/metrics", headers={"x-apikey": ""})).status_code == 401
        answer = await client.get("/metrics")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain")
    async with serving(store, config, metrics_public=True) as client:
        assert (await client.get("/metrics", headers={"x-apikey": ""})).status_code == 200
        assert (await client.get("/events", headers={"x-apikey": ""})).status_code == 401


async def test_keys_that_cannot_be_reloaded_answer_503_not_500(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def database_down() -> set[str]:
        raise StorageUnavailable("PostgreSQL is unavailable; nothing was stored. Retry later.")

    async with serving(store, make_config()) as client:
        monkeypatch.setattr(store, "active_api_key_hashes", database_down)
        response = await client.get("/events", headers={"x-apikey": "mk_unknown"})
        assert response.status_code == 503
        assert "unavailable" in response.json()["error"]
