"""MeterdClient.entitlement(): the server's answer, kept for a short TTL when asked to."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meterd.client import AsyncMeterdClient, MeterdClient, NotFound
from meterd.client.cache import TTLCache
from tests.conftest import API_KEY
from tests.integration.test_client import FAST, Server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path)
    running.start()
    try:
        yield running
    finally:
        running.stop()


def entitlement_gets(server: Server) -> int:
    with server.gate.lock:
        return sum("/entitlements/" in path for path in server.gate.gets)


def test_entitlement_reads_the_server_and_caches_for_its_ttl(server: Server) -> None:
    with MeterdClient(server.url, API_KEY, retries=FAST, entitlement_cache_ttl=0.5) as meter:
        meter.put_customer(
            "acme", plan=None, limits={"api.calls": {"period": "monthly", "limit": 3}}
        )
        first = meter.entitlement("acme", "api.calls")
        assert (first.usage, first.limit, first.remaining, first.has_access) == (0, 3, 3, True)
        assert first.period == "monthly"
        meter.capture("api.calls", "acme", 3)
        assert meter.entitlement("acme", "api.calls") == first  # cached
        assert entitlement_gets(server) == 1
        fresh = meter.entitlement("acme", "api.calls", fresh=True)
        assert (fresh.usage, fresh.remaining, fresh.has_access) == (3, 0, False)
        time.sleep(0.6)
        meter.capture("api.calls", "acme", 1)
        expired = meter.entitlement("acme", "api.calls")
        assert (expired.usage, expired.has_access) == (4, False)
        assert entitlement_gets(server) == 3

        listed = meter.entitlements("acme")
        assert [e.meter for e in listed] == ["api.calls", "response.time.ms", "storage.bytes"]
        assert listed[0].usage == 4 and listed[1].limit is None and listed[1].has_access
        with pytest.raises(NotFound):
            meter.entitlement("acme", "nope")


def test_without_a_ttl_every_call_asks(server: Server) -> None:
    with MeterdClient(server.url, API_KEY, retries=FAST) as meter:
        for _ in range(3):
            assert meter.entitlement("nobody", "api.calls").has_access
        assert entitlement_gets(server) == 3


async def test_the_async_client_too(server: Server) -> None:
    async with AsyncMeterdClient(
        server.url, API_KEY, retries=FAST, entitlement_cache_ttl=60
    ) as meter:
        await meter.put_customer(
            "acme", plan=None, limits={"api.calls": {"period": "daily", "limit": 1}}
        )
        await meter.capture("api.calls", "acme", 1)
        answer = await meter.entitlement("acme", "api.calls")
        assert (answer.usage, answer.has_access, answer.period) == (1, False, "daily")
        assert await meter.entitlement("acme", "api.calls") is answer
        assert [e.meter for e in await meter.entitlements("acme")][0] == "api.calls"


def test_the_cache_expires_and_stays_bounded() -> None:
    now = [0.0]
    cache: TTLCache[int] = TTLCache(1.0, clock=lambda: now[0])
    cache.put("a", 1)
    assert cache.get("a") == 1
    now[0] = 1.0
    assert cache.get("a") is None
    for i in range(20_000):
        cache.put(i, i)
    assert len(cache._entries) <= 10_000
    with pytest.raises(ValueError):
        TTLCache(-1)
