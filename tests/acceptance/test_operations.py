"""Operating a real `meterd serve`: backup and restore under load, logs, dry run, and
limits on slow clients, over real HTTP and raw sockets on 127.0.0.1."""

from __future__ import annotations

import json
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.acceptance.server import MeterdProcess
from tests.receiver import Receiver

pytestmark = pytest.mark.slow

KEY = "mk_operations"
BATCH = 200


def meterd(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meterd", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def stored_ids(database: Path) -> set[str]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM events")}


def test_backup_under_write_load_restores_a_consistent_database(tmp_path: Path) -> None:
    server = MeterdProcess(tmp_path, env={"METERD_API_KEYS": KEY})
    acknowledged: list[tuple[float, list[str]]] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=server.url, headers={"x-apikey": KEY}, timeout=30) as client:
            for number in range(10_000):
                if stop.is_set():
                    return
                ids = [f"b{number}-{i}" for i in range(BATCH)]
                body = [
                    {"eventType": "api.calls", "customerId": f"c{i % 5}", "value": 1, "id": key}
                    for i, key in enumerate(ids)
                ]
                assert client.post("/usagebatch", json=body).status_code == 201
                acknowledged.append((time.monotonic(), ids))

    with server:
        writer = threading.Thread(target=load)
        writer.start()
        try:
            while len(acknowledged) < 5:
                time.sleep(0.05)
            backup_started = time.monotonic()
            result = meterd(tmp_path, "backup", "copy.db", "--db", "sqlite:///meterd.db")
            backup_ended = time.monotonic()
            while len(acknowledged) < 10 + sum(1 for at, _ in acknowledged if at < backup_ended):
                time.sleep(0.05)
        finally:
            stop.set()
            writer.join(timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Backed up meterd.db to copy.db" in result.stdout
    assert not (tmp_path / "copy.db.partial").exists()

    # Restore as the README says: stop meterd, remove the database and its -wal and -shm
    # files, put the copy in its place, start meterd.
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"meterd.db{suffix}").unlink(missing_ok=True)
    shutil.copyfile(tmp_path / "copy.db", tmp_path / "meterd.db")
    with server, httpx.Client(base_url=server.url, headers={"x-apikey": KEY}) as client:
        usage = client.get("/customers/c0/usage", params={"period": "monthly"}).json()
    restored = stored_ids(tmp_path / "meterd.db")

    before = {key for at, ids in acknowledged if at < backup_started for key in ids}
    everything = {key for _, ids in acknowledged for key in ids}
    assert before <= restored <= everything
    assert len(everything - restored) >= 10 * BATCH  # the load went on after the copy
    # One snapshot: every batch is in the copy whole or not at all.
    for _, ids in acknowledged:
        assert set(ids) <= restored or not set(ids) & restored
    # The restored rollups agree with the restored events.
    assert usage["events"]["api.calls"] == sum(1 for key in restored if int(key[-1]) % 5 == 0)


def test_backup_refuses_to_overwrite_and_postgres(tmp_path: Path) -> None:
    (tmp_path / "there.db").write_text("keep me")
    assert meterd(tmp_path, "migrate", "--db", "sqlite:///meterd.db").returncode == 0
    refused = meterd(tmp_path, "backup", "there.db", "--db", "sqlite:///meterd.db")
    assert refused.returncode != 0 and "already exists" in refused.stderr
    assert (tmp_path / "there.db").read_text() == "keep me"
    postgres = meterd(tmp_path, "backup", "x.db", "--db", "postgresql://u@127.0.0.1/db")
    assert postgres.returncode != 0 and "pg_dump" in postgres.stderr


def write_config(tmp_path: Path, url: str) -> Path:
    config = tmp_path / "systemconfig.json"
    hook = {"url": url, "secret": "whsec_c2VjcmV0LXRlc3Qta2V5LTEyMzQ1Njc4"}
    document = {"periods": ["daily"], "events": {"api.calls": {"op": "sum"}}, "webhooks": [hook]}
    config.write_text(json.dumps(document))
    return config


def test_logs_start_line_close_rounds_delivery_outcomes_and_json(tmp_path: Path) -> None:
    with Receiver() as receiver:
        config = write_config(tmp_path, receiver.url + "?token=s3cret")
        server = MeterdProcess(
            tmp_path,
            "--log-format",
            "json",
            "--close-interval",
            "200ms",
            env={"METERD_API_KEYS": KEY, "METERD_CONFIG": str(config)},
        )
        with server, httpx.Client(base_url=server.url, headers={"x-apikey": KEY}) as client:
            event = {"customerId": "c1", "value": 2, "timestamp": "2025-01-15T10:00:00Z"}
            assert client.post("/usage/api.calls", json=event).status_code == 201
            deadline = time.monotonic() + 20
            while not receiver.requests and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)
        output = server.read_output()
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    messages = [line["message"] for line in lines]
    start = next(line for line in lines if line["message"].startswith("meterd "))
    assert start["config"] == str(config)
    assert start["database"] == "sqlite:///./meterd.db"
    assert start["address"] == f"http://127.0.0.1:{server.port}"
    assert start["version"]
    closes = [line for line in lines if line["message"].startswith("close round")]
    assert len(closes) == 1, messages  # rounds that close nothing stay quiet
    assert closes[0]["records"] == 1 and closes[0]["periods"] == {"daily": 1}
    [outcome] = [line for line in lines if line.get("outcome")]
    assert outcome["outcome"] == "delivered" and outcome["status_code"] == 200
    assert "s3cret" not in output
    assert all(line["level"] in ("info", "warning") for line in lines)


def test_dry_run_logs_the_full_signed_request(tmp_path: Path) -> None:
    config = write_config(tmp_path, "http://user:pa55@127.0.0.1:9/hook?token=s3cret")
    server = MeterdProcess(
        tmp_path,
        "--dry-run",
        "--close-interval",
        "200ms",
        env={"METERD_API_KEYS": KEY, "METERD_CONFIG": str(config)},
    )
    with server, httpx.Client(base_url=server.url, headers={"x-apikey": KEY}) as client:
        event = {"customerId": "c9", "value": 3, "timestamp": "2025-01-15T10:00:00Z"}
        assert client.post("/usage/api.calls", json=event).status_code == 201
        deadline = time.monotonic() + 20
        while "DRY RUN: would send POST" not in server.read_output():
            assert time.monotonic() < deadline, server.read_output()
            time.sleep(0.1)
    output = server.read_output()
    request = output[output.index("DRY RUN: would send POST") :]
    for header in ("x-webhook-signature: v1=", "webhook-id: ", "webhook-signature: v1,"):
        assert header in request.lower()
    assert '"type":"aggregation.completed"' in request and '"customerId":"c9"' in request
    assert "POST http://********@127.0.0.1:9/hook?token=********" in request
    assert "pa55" not in output and "s3cret" not in output


def slow_server(tmp_path: Path, *args: str) -> MeterdProcess:
    return MeterdProcess(tmp_path, "--request-timeout", "1s", *args, env={"METERD_API_KEYS": KEY})


def closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Whether the server closed `sock` within `seconds`, and what it sent first."""
    sock.settimeout(seconds)
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except TimeoutError:
        return False, received
    except ConnectionResetError:
        pass
    return True, received


def test_slow_and_idle_clients_are_cut_at_the_request_deadline(tmp_path: Path) -> None:
    server = slow_server(tmp_path)
    with server:
        address = ("127.0.0.1", server.port)
        # Connects and never sends.
        idle = socket.create_connection(address)
        started = time.monotonic()
        closed, answer = closed_within(idle, 4)
        assert closed and 0.8 <= time.monotonic() - started <= 3
        assert answer.startswith(b"HTTP/1.1 408")
        idle.close()

        # Headers at one byte every 0.2 s.
        headers = f"POST /usage/api.calls HTTP/1.1\r\nhost: x\r\nx-apikey: {KEY}\r\n".encode()
        trickle = socket.create_connection(address)
        started = time.monotonic()
        sent = 0
        trickle.settimeout(0.2)
        try:
            for byte in headers:
                trickle.send(bytes([byte]))
                sent += 1
                time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert sent < len(headers)  # cut before the headers were complete
        assert time.monotonic() - started <= 3
        trickle.close()

        # Headers at once, then the body at one byte every 0.2 s.
        body = b'{"customerId": "slow", "value": 1}'
        slow_body = socket.create_connection(address)
        slow_body.sendall(
            headers
            + f"content-length: {len(body)}\r\ncontent-type: application/json\r\n\r\n".encode()
        )
        started = time.monotonic()
        try:
            for byte in body:
                slow_body.send(bytes([byte]))
                time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass
        closed, answer = closed_within(slow_body, 4)
        assert closed and time.monotonic() - started <= 4
        assert not answer.startswith(b"HTTP/1.1 201")
        slow_body.close()

        # A client that sends its request in time is served as always.
        with httpx.Client(base_url=server.url, headers={"x-apikey": KEY}) as client:
            fast = client.post("/usage/api.calls", json={"customerId": "fast", "value": 1})
            assert fast.status_code == 201
            assert client.get("/events", params={"customerId": "slow"}).json() == []


def test_connections_beyond_the_maximum_are_refused(tmp_path: Path) -> None:
    server = slow_server(tmp_path, "--max-connections", "5", "--request-timeout", "20s")
    with server:
        address = ("127.0.0.1", server.port)
        held = [socket.create_connection(address) for _ in range(5)]
        try:
            extra = socket.create_connection(address)
            closed, answer = closed_within(extra, 3)
            assert closed and answer.startswith(b"HTTP/1.1 503")
            extra.close()
        finally:
            for sock in held:
                sock.close()
        time.sleep(0.2)
        assert httpx.get(server.url + "/ping").status_code == 200
