"""Crash under load: clients in several processes send events while the server is
SIGKILLed and restarted several times. Client retries plus server dedup must leave every
event stored exactly once and the aggregations equal to the reference, on both backends.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from meterd.client import MeterdClient, RetryPolicy
from tests.acceptance.server import MeterdProcess

pytestmark = pytest.mark.slow

KEY = "mk_crash"
CLIENTS = 3
EVENTS_PER_CLIENT = 1500
DAY_MS = 1_741_564_800_000  # 2025-03-10T00:00:00Z


def value_of(client: int, i: int) -> float:
    return [1, 0.1, 2.5, 7][(client + i) % 4]


def send_events(url: str, client: int, done: str) -> None:
    """One client process: track every event, then flush through the restarts."""
    retries = RetryPolicy(retries=60, backoff=0.05, max_backoff=0.5)
    with MeterdClient(url, KEY, batch_size=100, flush_interval=0.05, retries=retries) as meter:
        for i in range(EVENTS_PER_CLIENT):
            meter.track(
                "api.calls",
                f"cus_{i % 7}",
                value_of(client, i),
                timestamp=DAY_MS + (i * 1000) % 86_400_000,
                id=f"c{client}-e{i}",
            )
            if i % 100 == 0:
                time.sleep(0.01)
        meter.flush(timeout=120)
        failed = len(meter.failed)
    Path(done).write_text(str(failed))


def expected_totals() -> dict[str, int | float]:
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for client in range(CLIENTS):
        for i in range(EVENTS_PER_CLIENT):
            totals[f"cus_{i % 7}_daily_20250310"] += Decimal(repr(value_of(client, i)))
    return {k: int(v) if v == int(v) else float(v) for k, v in totals.items()}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sigkill_restarts_under_load_lose_and_double_nothing(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    config = tmp_path / "systemconfig.json"
    config.write_text(json.dumps({"periods": ["daily"], "events": {"api.calls": {"op": "sum"}}}))
    db = f"sqlite:///{tmp_path / 'm.db'}"
    if backend == "postgresql":
        db = request.getfixturevalue("postgres_url")
    server = MeterdProcess(
        tmp_path, "--config", str(config), "--db", db, env={"METERD_API_KEYS": KEY}
    )
    server.start()
    spawn = multiprocessing.get_context("spawn")
    done = [tmp_path / f"done-{c}" for c in range(CLIENTS)]
    clients = [
        spawn.Process(target=send_events, args=(server.url, c, str(done[c])))
        for c in range(CLIENTS)
    ]
    try:
        for process in clients:
            process.start()
        for _ in range(3):
            time.sleep(1.0)
            server.kill()
            time.sleep(0.3)
            server.start()
        for process in clients:
            process.join(timeout=180)
            assert process.exitcode == 0
        assert [path.read_text() for path in done] == ["0"] * CLIENTS
        with httpx.Client(base_url=server.url, headers={"x-apikey": KEY}) as http:
            ids: list[str] = []
            params = {"limit": "1000"}
            while True:
                response = http.get("/events", params=params)
                ids += [item["_id"] for item in response.json()]
                if "x-next-cursor" not in response.headers:
                    break
                params["cursor"] = response.headers["x-next-cursor"]
            assert len(ids) == CLIENTS * EVENTS_PER_CLIENT
            assert set(ids) == {
                f"c{c}-e{i}" for c in range(CLIENTS) for i in range(EVENTS_PER_CLIENT)
            }
            # Live usage, straight from the rollups: the scheduler may well have closed the
            # (past) day at a restart, before every event arrived, as designed.
            found = {}
            for customer in range(7):
                usage = http.get(
                    f"/customers/cus_{customer}/usage",
                    params={"period": "daily", "at": "2025-03-10T12:00:00Z"},
                ).json()
                found[f"cus_{customer}_daily_{usage['periodKey']}"] = usage["events"]["api.calls"]
            assert found == expected_totals()
    finally:
        for process in clients:
            if process.is_alive():
                process.kill()
        server.stop()
