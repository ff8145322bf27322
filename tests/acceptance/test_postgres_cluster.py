"""Three `meterd serve` processes on one PostgreSQL database.

Interleaved batches with deliberate duplicates go to all three at once; then all three
are asked to close the periods at the same moment. Every aggregation must equal a
reference computed from the events, each record must be closed once, and a local
receiver must get each webhook exactly once.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.acceptance.server import MeterdProcess
from tests.receiver import Receiver

pytestmark = pytest.mark.slow

KEY = "mk_cluster"
SECRET = "whsec_Y2x1c3Rlci10ZXN0LXNlY3JldC0xMjM0NTY3OA=="
DAYS = ("2025-03-10", "2025-03-11", "2025-03-12")


def make_events(rng: random.Random) -> list[dict[str, Any]]:
    events = []
    for i in range(3000):
        day = DAYS[i % 3]
        events.append(
            {
                "eventType": "api.calls" if i % 4 else "storage.bytes",
                "customerId": f"cus_{rng.randrange(40)}",
                "value": rng.choice([1, 2, 0.1, 0.25, 7.5, 100]),
                "timestamp": f"{day}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:00.000Z",
                "id": f"evt-{i}",
            }
        )
    return events


def reference(events: list[dict[str, Any]]) -> dict[str, dict[str, int | float]]:
    """Daily totals per customer straight from the (deduplicated) events."""
    values: dict[str, dict[str, list[Decimal]]] = defaultdict(lambda: defaultdict(list))
    for event in {e["id"]: e for e in events}.values():
        key = f"{event['customerId']}_daily_{event['timestamp'][:10].replace('-', '')}"
        values[key][event["eventType"]].append(Decimal(repr(event["value"])))
    expected: dict[str, dict[str, int | float]] = {}
    for key, by_type in values.items():
        expected[key] = {}
        for event_type, numbers in by_type.items():
            total = sum(numbers) if event_type == "api.calls" else max(numbers)
            expected[key][event_type] = int(total) if total == int(total) else float(total)
    return expected


def test_three_processes_close_each_period_once_and_send_each_webhook_once(
    tmp_path: Path, postgres_url: str
) -> None:
    config = tmp_path / "systemconfig.json"
    with Receiver() as receiver:
        config.write_text(
            json.dumps(
                {
                    "periods": ["daily"],
                    "events": {"api.calls": {"op": "sum"}, "storage.bytes": {"op": "max"}},
                    "webhooks": [{"url": receiver.url, "secret": SECRET}],
                }
            )
        )
        env = {"METERD_API_KEYS": KEY}
        args = ("--config", str(config), "--db", postgres_url, "--close-interval", "1h")
        servers = [MeterdProcess(tmp_path, *args, env=env) for _ in range(3)]
        try:
            for server in servers:
                server.start()
            # Each scheduler closes what it can at start-up; on this empty database that
            # round must be over before the past days fill, or it could close one early.
            time.sleep(2)
            events = make_events(random.Random(5))
            # Batches of 100, each also re-sent to another process: every event twice.
            batches = [events[i : i + 100] for i in range(0, len(events), 100)]
            sends = [(servers[n % 3], b) for n, b in enumerate(batches)]
            sends += [(servers[(n + 1) % 3], b) for n, b in enumerate(batches)]
            random.Random(9).shuffle(sends)

            def send(item: tuple[MeterdProcess, list[dict[str, Any]]]) -> int:
                server, batch = item
                response = httpx.post(
                    server.url + "/usagebatch", json=batch, headers={"x-apikey": KEY}, timeout=30
                )
                assert response.status_code == 201, response.text
                return int(response.json()["stored"])

            with ThreadPoolExecutor(max_workers=12) as pool:
                stored = sum(pool.map(send, sends))
            assert stored == len(events)

            def trigger(server: MeterdProcess) -> int:
                response = httpx.post(
                    server.url + "/aggregations/trigger", headers={"x-apikey": KEY}, timeout=60
                )
                assert response.status_code == 202, response.text
                return int(response.json()["closed"])

            with ThreadPoolExecutor(max_workers=3) as pool:
                closed = sum(pool.map(trigger, servers))
            expected = reference(events)
            assert closed == len(expected)

            with httpx.Client(base_url=servers[0].url, headers={"x-apikey": KEY}) as client:
                records = client.get("/aggregations", params={"limit": "1000"}).json()
                assert sorted(r["_id"] for r in records) == sorted(expected)
                assert {r["_id"]: r["events"] for r in records} == expected
                assert {r["status"] for r in records} == {"closed"}
                deadline = time.monotonic() + 60
                while client.get("/deliveries", params={"status": "pending"}).json():
                    assert time.monotonic() < deadline, "deliveries still pending after 60 s"
                    time.sleep(0.2)
                delivered = client.get("/deliveries", params={"limit": "1000"}).json()
            assert len(delivered) == len(expected)
            assert {d["status"] for d in delivered} == {"delivered"}
            received = Counter(r.headers["webhook-id"] for r in receiver.requests)
            assert set(received) == {d["webhookId"] for d in delivered}
            assert set(received.values()) == {1}
        finally:
            for server in servers:
                server.stop()
