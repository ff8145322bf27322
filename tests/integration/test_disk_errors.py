"""SQLite on a disk that fills up: a clear 503, no partial batch, and recovery without a
restart once space is freed. On a read-only disk: a clear refusal at start, and all the
data there once the disk is writable again.

The full disk is a real 3 MB tmpfs mounted for the test (root is needed to mount; CI
runs as root).
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from meterd.cli import main
from meterd.config.model import SystemConfig
from meterd.http.app import create_app
from meterd.settings import ServerSettings
from meterd.storage.sqlite.store import SQLiteStore
from tests.conftest import API_KEY


def run(*command: str) -> bool:
    return subprocess.run(command, capture_output=True).returncode == 0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    if not run("mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mount
    finally:
        run("umount", "-l", str(mount))


@pytest.fixture(params=[False, True], ids=["writer-thread", "ingest-process"])
async def client_on(
    request: pytest.FixtureRequest, small_disk: Path, config: SystemConfig
) -> AsyncIterator[httpx.AsyncClient]:
    """The app on the small disk; its events written by the writer thread or the ingest
    process (the full disk must read the same from both)."""
    store = SQLiteStore(str(small_disk / "meterd.db"), ingest_process=request.param)
    settings = ServerSettings(api_keys=(API_KEY,), close_interval_s=None, delivery_poll_s=None)
    app = create_app(settings, config, store)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://t",
            headers={"x-apikey": API_KEY},
        ) as client:
            yield client


def batch(n: int) -> list[dict[str, Any]]:
    pad = "x" * 200
    return [
        {
            "eventType": "api.calls",
            "customerId": f"c{i % 50}",
            "value": 1,
            "id": f"b{n}-{i}",
            "metadata": {"pad": pad},
        }
        for i in range(100)
    ]


async def count(client: httpx.AsyncClient) -> int:
    total = 0
    params = {"limit": "1000"}
    while True:
        response = await client.get("/events", params=params)
        assert response.status_code == 200
        total += len(response.json())
        if "x-next-cursor" not in response.headers:
            return total
        params["cursor"] = response.headers["x-next-cursor"]


async def test_full_disk_is_a_503_and_recovers(
    small_disk: Path, client_on: httpx.AsyncClient
) -> None:
    client = client_on
    filler = small_disk / "filler"
    acknowledged = 0
    refused = None
    with filler.open("wb") as out:
        out.write(b"\0" * (2_200_000))
    for n in range(200):
        response = await client.post("/usagebatch", json=batch(n))
        if response.status_code == 503:
            refused = n
            break
        assert response.status_code == 201
        acknowledged += 100
    assert refused is not None, "the disk never filled up"
    assert "could not be written" in response.json()["error"]
    assert response.headers["retry-after"] == "1"
    # All or nothing: exactly the acknowledged batches are there.
    assert await count(client) == acknowledged
    filler.unlink()
    again = await client.post("/usagebatch", json=batch(refused))
    assert again.status_code == 201
    assert await count(client) == acknowledged + 100


def test_read_only_disk_refuses_to_start_clearly_and_loses_nothing(small_disk: Path) -> None:
    """A read-only database file: `meterd` says so and exits; once writable, all is there."""
    db = f"sqlite:///{small_disk / 'meterd.db'}"
    created = CliRunner().invoke(main, ["keys", "create", "--db", db])
    assert created.exit_code == 0, created.output
    assert run("mount", "-o", "remount,ro", str(small_disk))
    try:
        refused = CliRunner().invoke(main, ["keys", "list", "--db", db])
        assert refused.exit_code != 0
        assert f"cannot open the SQLite database {small_disk / 'meterd.db'}" in refused.output
        assert "Traceback" not in refused.output
    finally:
        assert run("mount", "-o", "remount,rw", str(small_disk))
    listed = CliRunner().invoke(main, ["keys", "list", "--db", db])
    assert listed.exit_code == 0
    assert "default" in listed.output
