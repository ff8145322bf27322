"""Inside the running app: a crossing is signed and sent within a scheduler interval."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import msgspec
import pytest

from meterd.config.model import SystemConfig, WebhookConfig
from meterd.settings import ServerSettings
from meterd.storage.base import Store
from meterd.timeutil import now_ms
from tests.conftest import API_KEY, make_config
from tests.receiver import Receiver

INTERVAL_S = 0.3


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


@pytest.fixture
def config(receiver: Receiver) -> SystemConfig:
    hook = WebhookConfig(url=receiver.url, secrets=("whsec_c2VjcmV0LXRlc3Qta2V5",))
    return make_config(webhooks=(hook,), alert_thresholds=(50.0, 100.0))


@pytest.fixture
def settings() -> ServerSettings:
    return ServerSettings(
        api_keys=(API_KEY,),
        max_body_bytes=1_000_000,
        close_interval_s=INTERVAL_S,
        delivery_poll_s=0.05,
    )


async def test_a_crossing_arrives_within_one_interval(
    client: httpx.AsyncClient, store: Store, receiver: Receiver
) -> None:
    limits = {"api.calls": {"period": "monthly", "limit": 2}}
    assert (await client.put("/customers/live", json={"plan": None, "limits": limits})).is_success
    answer = await client.post("/usage/api.calls", json={"customerId": "live", "value": 1})
    assert answer.status_code == 201
    acknowledged = time.monotonic()
    acknowledged_ms = now_ms()
    while not receiver.requests and time.monotonic() - acknowledged < 10:
        await asyncio.sleep(0.02)
    took = time.monotonic() - acknowledged
    (request,) = receiver.requests
    body = msgspec.json.decode(request.body)
    assert (body["type"], body["customerId"]) == ("usage.threshold_crossed", "live")
    assert (body["data"]["threshold"], body["data"]["usage"], body["data"]["limit"]) == (50, 1, 2)
    # Found within one scheduler interval of the acknowledgement (plus the round's own
    # time); sent after the delivery worker's poll. Slack for a loaded 2-core machine.
    (alert,) = await store.list_alerts(customer_id="live", limit=10)
    assert alert.created_ms - acknowledged_ms <= INTERVAL_S * 1000 + 500
    assert took <= INTERVAL_S + 2.0, took
    entitled = (await client.get("/customers/live/entitlements/api.calls")).json()
    assert (entitled["usage"], entitled["hasAccess"]) == (1, True)
