"""`meterd serve` on SQLite writes events from its ingest process: killing that process
costs one 503 and nothing acknowledged, and the process never outlives its server."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.acceptance.server import MeterdProcess

pytestmark = pytest.mark.slow

KEY = "mk_acceptance"


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def ingest_process_of(server: MeterdProcess) -> int:
    """The server's ingest process: its child started by multiprocessing's spawn."""
    assert server.process is not None
    spawned = [
        child
        for child in children(server.process.pid)
        if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()
    ]
    assert len(spawned) == 1, spawned
    return spawned[0]


def gone(pid: int, within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            return True
        if state == "Z":  # exited, not yet reaped by its parent
            return True
        time.sleep(0.05)
    return False


def event(event_id: str) -> dict[str, str | int]:
    return {"customerId": "c1", "value": 1, "id": event_id}


def test_a_killed_ingest_process_costs_one_503_and_no_acknowledged_event(
    tmp_path: Path,
) -> None:
    server = MeterdProcess(tmp_path, env={"METERD_API_KEYS": KEY})
    with server, httpx.Client(base_url=server.url, headers={"x-apikey": KEY}) as client:
        assert client.post("/usage/api.calls", json=event("first")).status_code == 201
        first = ingest_process_of(server)
        os.kill(first, signal.SIGKILL)
        assert gone(first)
        refused = client.post("/usage/api.calls", json=event("second"))
        assert refused.status_code == 503
        assert "ingest process ended" in refused.json()["error"]
        assert refused.headers["retry-after"] == "1"
        retried = client.post("/usage/api.calls", json=event("second"))
        assert retried.status_code == 201
        assert retried.json()["duplicate"] is False
        assert ingest_process_of(server) != first
        stored = client.get("/events", params={"limit": "10"}).json()
        assert sorted(item["_id"] for item in stored) == ["first", "second"]
        second = ingest_process_of(server)
    # A graceful stop ends the ingest process with its server.
    assert gone(second)


def test_the_ingest_process_ends_when_its_server_is_killed(tmp_path: Path) -> None:
    server = MeterdProcess(tmp_path, env={"METERD_API_KEYS": KEY})
    server.start()
    try:
        with httpx.Client(base_url=server.url, headers={"x-apikey": KEY}) as client:
            assert client.post("/usage/api.calls", json=event("e1")).status_code == 201
        ingest = ingest_process_of(server)
    finally:
        server.kill()
    assert gone(ingest), "the ingest process outlived its killed server"
    with server, httpx.Client(base_url=server.url, headers={"x-apikey": KEY}) as client:
        assert [item["_id"] for item in client.get("/events").json()] == ["e1"]
