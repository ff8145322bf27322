"""SIGKILL between corrections and their `aggregation.adjusted` webhooks, and again while
those webhooks are in flight: nothing is lost, nothing is sent twice except the
deliveries in flight at the crash (same webhook-id, so receivers can dedupe).

`meterd serve` runs as a subprocess on SQLite against a real receiver: 60 customers'
events on a past day, closed and delivered; then one event per customer is voided
and the server killed before any revision exists.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.acceptance.test_webhook_restart import (
    MAX_IN_FLIGHT,
    SwitchableReceiver,
    api,
    check_requests,
    listing,
    meterd,
    stop_gracefully,
    successes_by_id,
    wait_all_delivered,
    wait_until,
)

pytestmark = pytest.mark.slow

CUSTOMERS = 60


def customer(index: int) -> str:
    return f"corr_{index:03d}"


def ingest_and_close(client: httpx.Client) -> None:
    noon = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    day = noon - timedelta(days=3)
    events = [
        {
            "eventType": "api.calls",
            "customerId": customer(i),
            "value": value,
            "timestamp": (day + timedelta(seconds=n)).isoformat().replace("+00:00", "Z"),
            "id": f"evt-{i}-{n}",
        }
        for i in range(CUSTOMERS)
        for n, value in enumerate((i, 1000))
    ]
    assert client.post("/usagebatch", json=events).status_code == 201
    assert client.post("/aggregations/trigger").status_code == 202


def test_sigkill_around_corrections_loses_and_repeats_nothing(tmp_path: Path) -> None:
    with SwitchableReceiver(delay_s=0.0) as receiver:
        server = meterd(tmp_path, receiver.url)
        try:
            server.start()
            with api(server) as client:
                ingest_and_close(client)
                wait_all_delivered(client)
                # Each customer's 1000 was sent by mistake: void it.
                for i in range(CUSTOMERS):
                    voided = client.post(f"/events/evt-{i}-1/void", json={"reason": "duplicate"})
                    assert voided.status_code == 200, voided.text
            # Crash with the corrections committed and no revision written yet.
            server.kill()

            receiver.delay_s = 0.4
            server.start()
            with api(server) as client:
                # The scheduler's start-up round may have revised them already: either way.
                assert client.post("/aggregations/trigger").status_code == 202
            wait_until(
                lambda: adjusted_successes(receiver) >= 10 and receiver.busy() > 0,
                "some adjusted webhooks are delivered and more are in flight",
            )
            server.kill()
            wait_until(lambda: receiver.busy() == 0, "the receiver finished its requests", 10)
            time.sleep(0.5)
            assert adjusted_successes(receiver) < CUSTOMERS

            restarted_at = time.monotonic()
            receiver.delay_s = 0.0
            server.start()
            with api(server) as client:
                # Nothing more to revise: the revisions were written once, before the crash.
                assert client.post("/aggregations/trigger").json()["revised"] == 0
                wait_all_delivered(client)
                answers = receiver.snapshot()
                by_id = check_requests(answers)
                deliveries = listing(client, "/deliveries")
                records = {r["_id"]: r for r in listing(client, "/aggregations")}
            stop_gracefully(server)
        finally:
            server.stop()

    assert len(deliveries) == 2 * CUSTOMERS
    assert {d["status"] for d in deliveries} == {"delivered"}
    assert set(by_id) == {d["webhookId"] for d in deliveries}
    adjusted = [json.loads(a.body) for a in by_id.values()]
    adjusted = [p for p in adjusted if p["type"] == "aggregation.adjusted"]
    assert len(adjusted) == CUSTOMERS
    for payload in adjusted:
        index = int(payload["customerId"].removeprefix("corr_"))
        data = payload["data"]
        assert (data["revision"], data["events"], data["eventCount"]) == (
            2,
            {"api.calls": index},
            1,
        )
        assert data["previous"]["events"] == {"api.calls": index + 1000}
        record = records[data["aggregationId"]]
        assert (record["revision"], record["events"]) == (2, data["events"])

    after = [a for a in receiver.snapshot() if a.arrived > restarted_at]
    before = [a for a in receiver.snapshot() if a.arrived < restarted_at]
    first_life, second_life = successes_by_id(before), successes_by_id(after)
    assert max(first_life.values()) == 1 and max(second_life.values()) == 1
    duplicated = set(first_life) & set(second_life)
    assert len(duplicated) <= MAX_IN_FLIGHT, sorted(duplicated)
    kinds = Counter(json.loads(by_id[w].body)["type"] for w in duplicated)
    assert set(kinds) <= {"aggregation.adjusted"}


def adjusted_successes(receiver: SwitchableReceiver) -> int:
    return sum(
        answer.status == 200 and b'"aggregation.adjusted"' in answer.body
        for answer in receiver.snapshot()
    )
