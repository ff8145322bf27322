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
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    limits = {"api.calls": {"period": "monthly", "limit": 2}}
    assert (await client.put("/customers/live", json={"plan": None, "limits": limits})).is_success
    answer = await client.post("/usage/api.calls", json={"customerId": "live", "value": 1})
    assert answer.status_code == 201
    acknowledged = time.monotonic()
    while not receiver.requests and time.monotonic() - acknowledged < 10:
        await asyncio.sleep(0.02)
    took = time.monotonic() - acknowledged
    (request,) = receiver.requests
    body = msgspec.json.decode(request.body)
    assert (body["type"], body["customerId"]) == ("usage.threshold_crossed", "live")
    assert (body["data"]["threshold"], body["data"]["usage"], body["data"]["limit"]) == (50, 1, 2)
    # One scheduler interval, plus the delivery worker's poll and the request itself.
    assert took <= INTERVAL_S + 0.5, took
    entitled = (await client.get("/customers/live/entitlements/api.calls")).json()
    assert (entitled["usage"], entitled["hasAccess"]) == (1, True)
