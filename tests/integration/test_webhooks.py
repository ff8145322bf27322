"""Signed webhook delivery from the outbox, against a real receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable, Iterator

import httpx
import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from meterd.closing import PeriodCloser
from meterd.config.model import EventTypeConfig, PeriodConfig, SystemConfig, WebhookConfig
from meterd.ingest import NewEvent
from meterd.storage.base import Store
from meterd.timeutil import parse_iso_ms
from meterd.webhooks.delivery import DeliveryWorker
from meterd.webhooks.signing import signed_headers
from tests.acceptance.server import free_port
from tests.conftest import make_config
from tests.receiver import Receiver

SECRET = "whsec_c2VjcmV0LXRlc3Qta2V5LTEyMzQ1Njc4"
OLD_SECRET = "whsec_b2xkLXNlY3JldC1rZXktMTIzNDU2Nzg5MA=="
FAST = (20, 20, 20)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def hook_config(url: str, **overrides: object) -> SystemConfig:
    hook = WebhookConfig(url=url, secrets=(SECRET, OLD_SECRET), retry_schedule_ms=FAST)
    fields: dict[str, object] = {
        "periods": (PeriodConfig("daily"), PeriodConfig("monthly")),
        "events": {"api.calls": EventTypeConfig("sum")},
        "webhooks": (hook,),
    }
    fields.update(overrides)
    return make_config(**fields)


@pytest.fixture
def config(receiver: Receiver) -> SystemConfig:
    return hook_config(receiver.url)


async def close_one_day(store: Store, config: SystemConfig, customers: int = 1) -> int:
    ts = parse_iso_ms("2025-01-15T10:00:00Z")
    await store.ingest(
        [NewEvent(f"e{i}", "api.calls", f"cus_{i}", 2.5, None, ts, ts) for i in range(customers)]
    )
    return await PeriodCloser(store, config).close_completed(parse_iso_ms("2025-01-16T00:00:00Z"))


async def until(check: Callable[[], Awaitable[bool]], seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached in time")


async def no_pending(store: Store) -> bool:
    return not await store.list_deliveries(status="pending", limit=1, before_id=None)


def test_signatures_verify_with_both_schemes() -> None:
    body = b'{"type":"aggregation.completed"}'
    now = int(time.time())
    headers = signed_headers((SECRET, OLD_SECRET), "msg_1", now, body)
    expected = hmac.new(SECRET.encode(), f"{now}.".encode() + body, hashlib.sha256).hexdigest()
    assert headers["X-Webhook-Signature"] == f"v1={expected}"
    assert headers["X-Webhook-Timestamp"] == str(now)
    assert headers["webhook-id"] == "msg_1"
    assert headers["webhook-timestamp"] == str(now)
    assert len(headers["webhook-signature"].split(" ")) == 2
    # During rotation a receiver holding either secret accepts the message.
    for secret in (SECRET, OLD_SECRET):
        assert Webhook(secret).verify(body, headers) == {"type": "aggregation.completed"}
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 32).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body + b" ", headers)


async def test_close_writes_one_outbox_row_per_matching_webhook(
    receiver: Receiver, open_store: Store
) -> None:
    store = open_store
    config = hook_config(
        receiver.url,
        webhooks=(
            WebhookConfig(url=receiver.url, secrets=(SECRET,)),
            WebhookConfig(url=receiver.url + "?monthly", secrets=(SECRET,), periods=("monthly",)),
            WebhookConfig(url=receiver.url + "?off", secrets=(SECRET,), enabled=False),
        ),
    )
    assert await close_one_day(store, config, customers=3) == 3
    rows = await store.list_deliveries(status="pending", limit=100, before_id=None)
    assert len(rows) == 3
    assert {r.aggregation_id for r in rows} == {f"cus_{i}_daily_20250115" for i in range(3)}
    closed_month = await PeriodCloser(store, config).close_completed(
        parse_iso_ms("2025-02-01T00:00:00Z")
    )
    assert closed_month == 3
    rows = await store.list_deliveries(status=None, limit=100, before_id=None)
    assert len(rows) == 3 + 3 * 2
    assert len({r.message_id for r in rows}) == 9
    # Closing again writes nothing more.
    await PeriodCloser(store, config).close_completed(parse_iso_ms("2025-02-01T00:00:00Z"))
    assert len(await store.list_deliveries(status=None, limit=100, before_id=None)) == 9


async def test_failing_receiver_gets_byte_identical_retries_until_success(
    receiver: Receiver, config: SystemConfig, store: Store, client: httpx.AsyncClient
) -> None:
    receiver.fail_first = 2
    assert await close_one_day(store, config) == 1
    worker = DeliveryWorker(store, config, poll_interval_s=0.02)
    worker.start()
    try:
        await until(lambda: no_pending(store))
    finally:
        await worker.stop()
    [delivery] = await store.list_deliveries(status=None, limit=10, before_id=None)
    assert delivery.status == "delivered"
    assert delivery.attempts == 3
    assert len(receiver.requests) == 3
    assert len({r.body for r in receiver.requests}) == 1
    assert {r.headers["webhook-id"] for r in receiver.requests} == {delivery.message_id}
    last = receiver.requests[-1]
    for secret in (SECRET, OLD_SECRET):
        payload = Webhook(secret).verify(last.body, last.headers)
        assert payload["type"] == "aggregation.completed"
        assert payload["customerId"] == "cus_0"
        assert payload["period"] == "daily"
        assert payload["data"]["events"] == {"api.calls": 2.5}
        assert payload["data"]["periodEnd"] == "2025-01-15T23:59:59.999Z"
    detail = (await client.get(f"/deliveries/{delivery.id}")).json()
    assert [a["statusCode"] for a in detail["attemptLog"]] == [500, 500, 200]
    assert detail["attemptLog"][0]["response"] == "nope"
    assert detail["payload"]["customerId"] == "cus_0"
    record = (await client.get("/aggregations", params={"period": "daily"})).json()[0]
    assert record["webhookStatus"]["delivered"] is True
    assert record["webhookStatus"]["attempts"] == 3
    assert record["webhookStatus"]["deliveredAt"] is not None


async def test_receiver_down_ends_failed_and_redeliver_sends_it(
    store: Store, client: httpx.AsyncClient
) -> None:
    down = Receiver(port=free_port())
    config = hook_config(down.url)
    assert await close_one_day(store, config) == 1
    worker = DeliveryWorker(store, config, poll_interval_s=0.02)
    worker.start()
    try:
        await until(lambda: no_pending(store))
        [failed] = await store.list_deliveries(status="failed", limit=10, before_id=None)
        assert failed.attempts == len(FAST) + 1
        assert failed.last_error is not None and "Connect" in failed.last_error
        listed = (await client.get("/deliveries", params={"status": "failed"})).json()
        assert [d["id"] for d in listed] == [failed.id]
        with down:
            response = await client.post(f"/deliveries/{failed.id}/redeliver")
            assert response.status_code == 202
            assert response.json()["status"] == "pending"
            worker.wake()
            await until(lambda: no_pending(store))
            assert len(down.requests) == 1
    finally:
        await worker.stop()
    delivered = (await client.get(f"/deliveries/{failed.id}")).json()
    assert delivered["status"] == "delivered"
    assert delivered["attempts"] == len(FAST) + 2


async def test_410_stops_at_once(
    receiver: Receiver, config: SystemConfig, open_store: Store
) -> None:
    store = open_store
    receiver.fail_first = 100
    receiver.fail_status = 410
    await close_one_day(store, config)
    worker = DeliveryWorker(store, config, poll_interval_s=0.02)
    worker.start()
    try:
        await until(lambda: no_pending(store))
    finally:
        await worker.stop()
    [delivery] = await store.list_deliveries(status="failed", limit=10, before_id=None)
    assert delivery.attempts == 1
    assert delivery.last_error == "HTTP 410"


async def test_retry_after_is_honoured(
    receiver: Receiver, config: SystemConfig, open_store: Store
) -> None:
    store = open_store
    receiver.fail_first = 1
    receiver.fail_status = 503
    receiver.fail_headers = {"Retry-After": "1"}
    await close_one_day(store, config)
    worker = DeliveryWorker(store, config, poll_interval_s=0.02)
    worker.start()
    try:
        await until(lambda: no_pending(store))
    finally:
        await worker.stop()
    first, second = receiver.requests
    assert second.at - first.at >= 0.95


async def test_dry_run_signs_and_sends_nothing(
    receiver: Receiver, config: SystemConfig, store: Store, client: httpx.AsyncClient
) -> None:
    await close_one_day(store, config, customers=2)
    worker = DeliveryWorker(store, config, dry_run=True, poll_interval_s=0.02)
    worker.start()
    try:
        await until(lambda: no_pending(store))
    finally:
        await worker.stop()
    assert receiver.requests == []
    listed = (await client.get("/deliveries")).json()
    assert [(d["status"], d["dryRun"]) for d in listed] == [("delivered", True)] * 2
    record = (await client.get("/aggregations")).json()[0]
    assert record["webhookStatus"]["delivered"] is False


async def test_deliveries_api_errors(client: httpx.AsyncClient) -> None:
    assert (await client.get("/deliveries", params={"status": "lost"})).status_code == 400
    assert (await client.get("/deliveries/12345")).status_code == 404
    assert (await client.get("/deliveries/abc")).status_code == 404
    assert (await client.post("/deliveries/12345/redeliver")).status_code == 404
