"""`meterd serve` as a subprocess, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.acceptance.server import MeterdProcess

pytestmark = pytest.mark.slow

KEY = "mk_acceptance"


def no_key_env() -> dict[str, str]:
    return {"METERD_API_KEYS": "", "METERD_DATABASE_URL": "", "METERD_CONFIG": ""}


def test_first_start_prints_a_key_that_works_after_restart(tmp_path: Path) -> None:
    server = MeterdProcess(tmp_path, env=no_key_env())
    with server:
        pass
    printed = re.findall(r"^API key: (\S+)$", server.read_output(), re.MULTILINE)
    assert len(printed) == 1, server.read_output()
    assert "built-in sample config" in server.read_output()
    assert (tmp_path / "meterd.db").exists()
    with server:
        assert (
            httpx.get(server.url + "/events", headers={"x-apikey": printed[0]}).status_code == 200
        )
        assert httpx.get(server.url + "/events", headers={"x-apikey": "nope"}).status_code == 401
    assert "API key:" not in server.read_output()


def test_sigkill_right_after_201_loses_no_acknowledged_event(tmp_path: Path) -> None:
    server = MeterdProcess(tmp_path, env={"METERD_API_KEYS": KEY})
    server.start()
    acknowledged: list[str] = []
    try:
        with httpx.Client(base_url=server.url, headers={"x-apikey": KEY}) as client:
            for batch in range(20):
                events: list[dict[str, str | int]] = [
                    {
                        "eventType": "api.calls",
                        "customerId": f"c{i % 7}",
                        "value": i,
                        "id": f"b{batch}-e{i}",
                    }
                    for i in range(500)
                ]
                response = client.post("/usagebatch", json=events)
                assert response.status_code == 201
                acknowledged += [str(e["id"]) for e in events]
    finally:
        server.kill()
    with server, httpx.Client(base_url=server.url, headers={"x-apikey": KEY}) as client:
        found: set[str] = set()
        params = {"limit": "1000"}
        while True:
            response = client.get("/events", params=params)
            found.update(item["_id"] for item in response.json())
            if "x-next-cursor" not in response.headers:
                break
            params["cursor"] = response.headers["x-next-cursor"]
    assert found == set(acknowledged)


def test_invalid_config_stops_serve_and_check_names_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "systemconfig.json"
    bad.write_text(json.dumps({"periods": ["daily"], "events": {"api.calls": {"op": "median"}}}))
    for args in (["config", "check", str(bad)], ["serve", "--config", str(bad), "--port", "1"]):
        result = subprocess.run(
            [sys.executable, "-m", "meterd", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode != 0
        assert str(bad) in result.stderr
        assert 'events."api.calls".op' in result.stderr
        assert "median" in result.stderr
