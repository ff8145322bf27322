"""`meterd entitlements` on a real database file: the same answer as the API."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from click.testing import CliRunner

from meterd.cli import main
from meterd.ingest import NewEvent
from meterd.storage.sqlite.store import SQLiteStore
from meterd.timeutil import now_ms
from tests.plans_support import PRO


def run(*args: str) -> str:
    result = CliRunner(env={"COLUMNS": "300"}).invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_entitlements_from_the_command_line(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'm.db'}"
    config_file = tmp_path / "systemconfig.json"
    config_file.write_text(
        json.dumps(
            {
                "periods": ["daily", "monthly"],
                "events": {"api.calls": {"op": "sum"}, "storage.bytes": {"op": "max"}},
                "plans": {"pro": {**PRO, "charges": {}, "allowances": {"api.calls": 10}}},
            }
        )
    )
    conf = ["--config", str(config_file), "--db", db]
    run("customers", "set", "acme", "--plan", "pro", *conf)

    async def ingest() -> None:
        store = SQLiteStore(str(tmp_path / "m.db"))
        await store.open()
        ts = now_ms()
        await store.ingest(
            [NewEvent(f"e{i}", "api.calls", "acme", 5, None, ts, ts) for i in (1, 2)]
        )
        await store.close()

    asyncio.run(ingest())
    one = json.loads(run("entitlements", "acme", "api.calls", "--json", *conf))
    assert (one["usage"], one["limit"], one["remaining"], one["hasAccess"]) == (10, 10, 0, False)
    every = json.loads(run("entitlements", "acme", "--json", *conf))
    assert [e["meter"] for e in every] == ["api.calls", "storage.bytes"]
    assert every[1]["limit"] is None and every[1]["hasAccess"] is True
    table = run("entitlements", "acme", *conf)
    assert "api.calls" in table and "NO" in table and "storage.bytes" in table
