"""Restart meterd while webhook deliveries are pending: they are still delivered, none
twice in the normal case, and the receiver can dedupe by webhook-id in the crash case.

Both tests run `meterd serve` as a subprocess against a real receiver on 127.0.0.1:
200 customers' events on a past day, one trigger, 200 outbox rows.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook
from starlette.requests import Request
from starlette.responses import Response

from meterd.settings import ServerSettings
from tests.acceptance.server import MeterdProcess
from tests.receiver import Receiver

pytestmark = pytest.mark.slow

KEY = "mk_acceptance"
SECRET = "whsec_" + base64.b64encode(b"meterd-webhook-restart-test-key!").decode()
CUSTOMERS = 200
EVENTS_PER_CUSTOMER = 3
# Attempts that may be lost in a crash: at most one per delivery in flight.
MAX_IN_FLIGHT = ServerSettings.delivery_concurrency
WAIT_S = 60.0


@dataclass(frozen=True)
class Answered:
    """One request as the receiver saw it, and the status it answered with."""

    webhook_id: str
    headers: dict[str, str]
    body: bytes
    arrived: float  # time.monotonic() in this process
    status: int


@dataclass
class SwitchableReceiver(Receiver):
    """Answers 503 at once while `failing`; otherwise 200 after `delay_s`.

    A request counts as received successfully once its 200 is answered: by then a
    real receiver would have acted on it, whether or not the sender lived to read it.
    """

    failing: bool = False
    delay_s: float = 0.0
    answered: list[Answered] = field(default_factory=list)
    in_flight: int = 0

    async def _hook(self, request: Request) -> Response:
        arrived = time.monotonic()
        body = await request.body()
        status = 503 if self.failing else 200
        if status == 200:
            with self._lock:
                self.in_flight += 1
            try:
                await asyncio.sleep(self.delay_s)
            finally:
                with self._lock:
                    self.in_flight -= 1
        headers = dict(request.headers)
        with self._lock:
            self.answered.append(
                Answered(headers.get("webhook-id", ""), headers, body, arrived, status)
            )
        return Response(b"{}" if status == 200 else b"busy", status_code=status)

    def __enter__(self) -> SwitchableReceiver:
        self.start()
        return self

    def snapshot(self) -> list[Answered]:
        with self._lock:
            return list(self.answered)

    def successes(self) -> int:
        with self._lock:
            return sum(answer.status == 200 for answer in self.answered)

    def busy(self) -> int:
        with self._lock:
            return self.in_flight


# -- meterd and its API ------------------------------------------------------


def meterd(tmp_path: Path, receiver_url: str) -> MeterdProcess:
    config = tmp_path / "systemconfig.json"
    config.write_text(
        json.dumps(
            {
                "periods": ["daily"],
                "events": {"api.calls": {"op": "sum"}},
                "webhooks": [
                    {
                        "url": receiver_url,
                        "secret": SECRET,
                        "enabled": True,
                        "retrySchedule": ["1s"] * 8,
                    }
                ],
            }
        )
    )
    # The scheduler closes nothing on its own: the test closes the period with the trigger.
    return MeterdProcess(
        tmp_path,
        "--config",
        str(config),
        "--db",
        f"sqlite:///{tmp_path / 'meterd.db'}",
        "--close-interval",
        "1h",
        env={"METERD_API_KEYS": KEY, "DRY_RUN": ""},
    )


@contextmanager
def api(server: MeterdProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"x-apikey": KEY}, timeout=10) as client:
        yield client


def stop_gracefully(server: MeterdProcess) -> None:
    """SIGTERM, and meterd must exit on its own (MeterdProcess SIGKILLs it after 10 s)."""
    server.stop()
    assert server.process is not None
    # uvicorn re-raises the signal it shut down for, so a clean exit reads as -SIGTERM.
    assert server.process.returncode in (0, -signal.SIGTERM), (
        f"meterd did not exit on SIGTERM (exit status {server.process.returncode}):\n"
        + server.read_output()
    )


def customer(index: int) -> str:
    return f"cust_{index:03d}"


def expected_totals() -> dict[str, int]:
    return {
        customer(i): sum(i * 10 + n for n in range(EVENTS_PER_CUSTOMER)) for i in range(CUSTOMERS)
    }


def ingest_and_close(client: httpx.Client) -> None:
    """Every customer's events at noon on a past day, then close that day."""
    day = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    noon = day - timedelta(days=3)
    events = [
        {
            "eventType": "api.calls",
            "customerId": customer(i),
            "value": i * 10 + n,
            "timestamp": (noon + timedelta(seconds=n)).isoformat().replace("+00:00", "Z"),
            "id": f"evt-{i}-{n}",
        }
        for i in range(CUSTOMERS)
        for n in range(EVENTS_PER_CUSTOMER)
    ]
    response = client.post("/usagebatch", json=events)
    assert response.status_code == 201, response.text
    response = client.post("/aggregations/trigger")
    assert response.status_code == 202, response.text
    # The scheduler's start-up round may have closed the day already: either way, once.
    records = listing(client, "/aggregations")
    assert len(records) == CUSTOMERS
    assert {r["status"] for r in records} == {"closed"}


def listing(client: httpx.Client, path: str, **params: str) -> list[dict[str, Any]]:
    """Every item of a paged listing, following X-Next-Cursor."""
    items: list[dict[str, Any]] = []
    query = {"limit": "1000", **params}
    for _ in range(100):
        response = client.get(path, params=query)
        assert response.status_code == 200, response.text
        items += response.json()
        cursor = response.headers.get("x-next-cursor")
        if cursor is None:
            return items
        query["cursor"] = cursor
    raise AssertionError(f"{path}: more pages than expected")


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting until {what}")
        time.sleep(0.05)


def wait_all_delivered(client: httpx.Client) -> None:
    def none_pending() -> bool:
        response = client.get("/deliveries", params={"status": "pending", "limit": "1"})
        assert response.status_code == 200, response.text
        return not response.json()

    wait_until(none_pending, "no delivery is pending")


# -- checks ------------------------------------------------------------------


def check_signed(answer: Answered) -> None:
    """Both signatures of one request verify with the webhook's secret."""
    Webhook(SECRET).verify(answer.body, answer.headers)
    timestamp = answer.headers["x-webhook-timestamp"]
    assert answer.headers["webhook-timestamp"] == timestamp
    digest = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + answer.body, hashlib.sha256)
    assert answer.headers["x-webhook-signature"] == "v1=" + digest.hexdigest()


def check_requests(answers: list[Answered]) -> dict[str, Answered]:
    """Every request is signed and a webhook-id's body never changes; one answer per id."""
    by_id: dict[str, Answered] = {}
    for answer in answers:
        check_signed(answer)
        first = by_id.setdefault(answer.webhook_id, answer)
        assert answer.body == first.body, f"{answer.webhook_id}: body changed between attempts"
    return by_id


def check_delivered(
    client: httpx.Client, by_id: dict[str, Answered], sent: Counter[str]
) -> dict[str, dict[str, Any]]:
    """Every delivery is delivered, and the receiver saw exactly the deliveries there are."""
    deliveries = {d["webhookId"]: d for d in listing(client, "/deliveries")}
    assert len(deliveries) == CUSTOMERS
    assert {d["status"] for d in deliveries.values()} == {"delivered"}
    assert set(by_id) == set(deliveries)
    for webhook_id, delivery in deliveries.items():
        # meterd may lose the record of an attempt only by crashing, never invent one.
        assert delivery["attempts"] <= sent[webhook_id], delivery
        # Nothing recorded as delivered is sent again: one success in each attempt log.
        found = client.get(f"/deliveries/{delivery['id']}").json()
        codes = [attempt["statusCode"] for attempt in found["attemptLog"]]
        assert codes.count(200) == 1 and codes[-1] == 200, found
    return deliveries


def check_totals(client: httpx.Client, by_id: dict[str, Answered]) -> None:
    """What the receiver got, once per webhook-id, is what GET /aggregations says."""
    records = {r["_id"]: r for r in listing(client, "/aggregations", period="daily")}
    assert len(records) == CUSTOMERS
    received: dict[str, dict[str, Any]] = {}
    for answer in by_id.values():
        payload = json.loads(answer.body)
        assert payload["type"] == "aggregation.completed"
        received[payload["data"]["aggregationId"]] = payload
    assert set(received) == set(records)
    for aggregation_id, payload in received.items():
        record, data = records[aggregation_id], payload["data"]
        assert record["status"] == "closed"
        assert record["webhookStatus"]["delivered"] is True
        assert payload["customerId"] == record["customerId"]
        assert payload["period"] == record["period"] == "daily"
        for key in ("periodKey", "periodStart", "periodEnd", "events", "eventCounts"):
            assert data[key] == record[key], (aggregation_id, key)
        assert data["eventCount"] == record["eventCount"] == EVENTS_PER_CUSTOMER
    totals = {p["customerId"]: p["data"]["events"]["api.calls"] for p in received.values()}
    assert totals == expected_totals()


def successes_by_id(answers: list[Answered]) -> Counter[str]:
    return Counter(answer.webhook_id for answer in answers if answer.status == 200)


# -- the tests ---------------------------------------------------------------


def test_sigterm_with_pending_deliveries_delivers_each_exactly_once(tmp_path: Path) -> None:
    with SwitchableReceiver(failing=True, delay_s=0.2) as receiver:
        server = meterd(tmp_path, receiver.url)
        try:
            server.start()
            with api(server) as client:
                ingest_and_close(client)
            wait_until(
                lambda: len({a.webhook_id for a in receiver.snapshot()}) == CUSTOMERS,
                "every delivery has failed once",
            )
            # Healthy but slow: SIGTERM lands while successful attempts are in flight,
            # and graceful shutdown must finish and record them.
            receiver.failing = False
            wait_until(
                lambda: receiver.successes() >= 30 and receiver.busy() > 0,
                "some deliveries succeeded and more are in flight",
            )
            stop_gracefully(server)
            stopped = successes_by_id(receiver.snapshot())
            assert len(stopped) < CUSTOMERS, "nothing was left pending for the restart"
            assert stopped.most_common(1)[0][1] == 1
            assert "Traceback" not in server.read_output(), server.read_output()

            server.start()
            with api(server) as client:
                wait_all_delivered(client)
                answers = receiver.snapshot()
                by_id = check_requests(answers)
                deliveries = check_delivered(client, by_id, Counter(a.webhook_id for a in answers))
                check_totals(client, by_id)
            stop_gracefully(server)
        finally:
            server.stop()
    assert "Traceback" not in server.read_output(), server.read_output()

    successes = successes_by_id(answers)
    twice = {webhook_id: n for webhook_id, n in successes.items() if n != 1}
    assert not twice, f"delivered more than once: {twice}"
    sent = Counter(answer.webhook_id for answer in answers)
    # A graceful stop loses no attempt: meterd's log matches what the receiver saw.
    for webhook_id, delivery in deliveries.items():
        assert delivery["attempts"] == sent[webhook_id], delivery


def test_sigkill_mid_delivery_redelivers_and_receiver_can_dedupe(tmp_path: Path) -> None:
    with SwitchableReceiver(delay_s=0.4) as receiver:
        server = meterd(tmp_path, receiver.url)
        try:
            server.start()
            with api(server) as client:
                ingest_and_close(client)
            wait_until(
                lambda: receiver.successes() >= 30 and receiver.busy() > 0,
                "some deliveries succeeded and more are in flight",
            )
            server.kill()
            # Requests in flight at the crash still complete at the receiver.
            wait_until(lambda: receiver.busy() == 0, "the receiver finished its requests", 10)
            time.sleep(0.5)
            assert len(successes_by_id(receiver.snapshot())) < CUSTOMERS

            restarted_at = time.monotonic()
            server.start()
            with api(server) as client:
                wait_all_delivered(client)
                answers = receiver.snapshot()
                by_id = check_requests(answers)
                check_delivered(client, by_id, Counter(a.webhook_id for a in answers))
                check_totals(client, by_id)
            stop_gracefully(server)
        finally:
            server.stop()

    first_life = successes_by_id([a for a in answers if a.arrived < restarted_at])
    second_life = successes_by_id([a for a in answers if a.arrived > restarted_at])
    # Within one process's life, each webhook-id succeeds once at most.
    assert max(first_life.values()) == 1
    assert max(second_life.values()) == 1
    assert set(first_life) | set(second_life) == set(by_id)
    # Duplicates only across the crash, at most one per attempt in flight when it hit.
    duplicated = set(first_life) & set(second_life)
    assert 1 <= len(duplicated) <= MAX_IN_FLIGHT, sorted(duplicated)
