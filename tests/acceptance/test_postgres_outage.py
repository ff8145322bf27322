"""PostgreSQL stopped and restarted under a running meterd: requests fail fast with 503
while it is down, nothing acknowledged is lost, and meterd recovers without a restart.

The test stops and starts the local cluster with pg_ctlcluster (as CI does, as root).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.acceptance.server import MeterdProcess
from tests.conftest import POSTGRES_REQUIRED

pytestmark = pytest.mark.slow

KEY = "mk_outage"


def cluster(action: str) -> None:
    versions = sorted(p.name for p in Path("/etc/postgresql").iterdir())
    for version in versions:
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action, "-m", "fast"]
            if action == "stop"
            else ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action],
            check=True,
            capture_output=True,
            timeout=60,
        )


def batch(n: int) -> list[dict[str, Any]]:
    return [
        {"eventType": "api.calls", "customerId": f"c{i % 5}", "value": 1, "id": f"b{n}-{i}"}
        for i in range(50)
    ]


def test_requests_fail_fast_while_postgres_is_down_and_recover(
    tmp_path: Path, postgres_url: str
) -> None:
    if shutil.which("pg_ctlcluster") is None or not Path("/etc/postgresql").is_dir():
        if POSTGRES_REQUIRED:
            pytest.fail("pg_ctlcluster is needed to stop and start PostgreSQL")
        pytest.skip("no local PostgreSQL cluster to stop (pg_ctlcluster)")
    config = tmp_path / "systemconfig.json"
    config.write_text(json.dumps({"periods": ["daily"], "events": {"api.calls": {"op": "sum"}}}))
    server = MeterdProcess(
        tmp_path, "--config", str(config), "--db", postgres_url, env={"METERD_API_KEYS": KEY}
    )
    acknowledged = 0
    with server, httpx.Client(base_url=server.url, headers={"x-apikey": KEY}, timeout=30) as client:
        for n in range(3):
            assert client.post("/usagebatch", json=batch(n)).status_code == 201
            acknowledged += 50
        cluster("stop")
        try:
            for n in range(3, 8):
                started = time.monotonic()
                response = client.post("/usagebatch", json=batch(n))
                elapsed = time.monotonic() - started
                assert response.status_code == 503, response.text
                assert response.headers["retry-after"] == "1"
                assert "PostgreSQL" in response.json()["error"]
                assert elapsed < 3.0, f"took {elapsed:.1f} s to refuse"
            assert client.get("/health").status_code == 503
        finally:
            cluster("start")
        deadline = time.monotonic() + 30
        while True:
            response = client.post("/usagebatch", json=batch(3))
            if response.status_code == 201:
                acknowledged += 50
                break
            assert response.status_code == 503
            assert time.monotonic() < deadline, "meterd did not recover within 30 s"
            time.sleep(0.5)
        assert client.get("/health").status_code == 200
        listed = client.get("/events", params={"limit": "1000"}).json()
        assert len(listed) == acknowledged
