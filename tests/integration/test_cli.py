"""The `meterd` commands other than serve, on a real database file."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner

from meterd.cli import main


def run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'm.db'}"
    created = run("keys", "create", "--name", "billing", "--db", db)
    key = re.search(r"^API key: (mk_\S+)$", created, re.MULTILINE)
    assert key is not None
    listed = run("keys", "list", "--db", db)
    assert "billing" in listed
    assert key[1][:9] in listed
    assert key[1] not in listed
    assert "Revoked key 1" in run("keys", "revoke", "1", "--db", db)
    again = CliRunner().invoke(main, ["keys", "revoke", "1", "--db", db])
    assert again.exit_code != 0
    assert "no active key" in again.output


def test_usage_and_rebuild(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'm.db'}"
    config = tmp_path / "systemconfig.json"
    config.write_text(
        json.dumps({"periods": ["daily", "monthly"], "events": {"api.calls": {"op": "sum"}}})
    )
    assert "OK" in run("config", "check", str(config))

    import asyncio

    from meterd.ingest import NewEvent
    from meterd.storage.sqlite.store import SQLiteStore
    from meterd.timeutil import parse_iso_ms

    async def load() -> None:
        store = SQLiteStore(str(tmp_path / "m.db"))
        await store.open()
        ts = parse_iso_ms("2025-01-15T10:00:00Z")
        await store.ingest(
            [NewEvent(f"e{i}", "api.calls", "cus_9", 0.5, None, ts, ts) for i in range(6)]
        )
        await store.close()

    asyncio.run(load())
    args = ["--customer", "cus_9", "--at", "2025-01-20T00:00:00Z", "--config", str(config)]
    shown = run("usage", *args, "--db", db)
    assert "api.calls" in shown
    assert "202501" in shown
    assert re.search(r"api\.calls\s*│\s*3\s*│\s*6", shown), shown
    assert "Rebuilt rollups from 6 events." in run("rebuild", "--db", db)
    assert run("usage", *args, "--db", db).split("as of")[0] == shown.split("as of")[0]
