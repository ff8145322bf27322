"""The `meterd` commands other than serve, on a real database file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
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


# --- values are text, the database is named, JSON and whole tables ----------------

EVIL = "evil[/bold] [link=https://attacker.example]click[/link] :smile:"
LONG_URL = "http://127.0.0.1:9/" + "h" * 200


def run_split(*args: str) -> tuple[str, str]:
    """stdout and stderr of a command that must succeed."""
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout, result.stderr


def closed_period_with_a_delivery(tmp_path: Path) -> tuple[str, Path]:
    """A database whose customer id is rich markup, with one closed record to deliver."""
    import asyncio

    from meterd.closing import PeriodCloser
    from meterd.config.model import EventTypeConfig, PeriodConfig, SystemConfig, WebhookConfig
    from meterd.ingest import NewEvent
    from meterd.storage.sqlite.store import SQLiteStore
    from meterd.timeutil import parse_iso_ms

    config_path = tmp_path / "systemconfig.json"
    config_path.write_text(
        json.dumps({"periods": ["daily"], "events": {"api.calls": {"op": "sum"}}})
    )
    config = SystemConfig(
        periods=(PeriodConfig("daily"),),
        events={"api.calls": EventTypeConfig("sum")},
        webhooks=(WebhookConfig(url=LONG_URL, secrets=("s",)),),
    )

    async def load() -> None:
        store = SQLiteStore(str(tmp_path / "m.db"))
        await store.open()
        ts = parse_iso_ms("2025-01-15T10:00:00Z")
        await store.ingest([NewEvent("e1", "api.calls", EVIL, 2.0, None, ts, ts)])
        await PeriodCloser(store, config).close_completed(parse_iso_ms("2025-02-01T00:00:00Z"))
        await store.close()

    asyncio.run(load())
    return f"sqlite:///{tmp_path / 'm.db'}", config_path


def test_markup_in_values_is_printed_as_text(tmp_path: Path) -> None:
    db, config = closed_period_with_a_delivery(tmp_path)
    shown, _ = run_split("deliveries", "--db", db)
    assert f"{EVIL}_daily_20250115" in shown
    args = ["--customer", EVIL, "--at", "2025-01-15T12:00:00Z", "--config", str(config)]
    shown, _ = run_split("usage", *args, "--db", db)
    assert EVIL in shown
    assert "\x1b]8;" not in shown  # no terminal hyperlink


def test_tables_are_not_cut_when_stdout_is_not_a_terminal(tmp_path: Path) -> None:
    db, _ = closed_period_with_a_delivery(tmp_path)
    shown, _ = run_split("deliveries", "--db", db)
    assert LONG_URL in shown
    assert "…" not in shown


def test_listing_commands_print_json(tmp_path: Path) -> None:
    db, config = closed_period_with_a_delivery(tmp_path)
    (delivery,) = json.loads(run_split("deliveries", "--json", "--db", db)[0])
    assert delivery["aggregationId"] == f"{EVIL}_daily_20250115"
    assert delivery["url"] == LONG_URL
    assert delivery["status"] == "pending"
    args = ["--customer", EVIL, "--at", "2025-01-15T12:00:00Z", "--config", str(config)]
    usage = json.loads(run_split("usage", *args, "--json", "--db", db)[0])
    assert usage["customerId"] == EVIL
    assert usage["events"] == {"api.calls": 2}
    assert usage["status"] == "closed"
    run("keys", "create", "--name", EVIL, "--db", db)
    (key,) = json.loads(run_split("keys", "list", "--json", "--db", db)[0])
    assert key["name"] == EVIL
    assert key["revokedAt"] is None


def test_read_commands_name_the_database_they_read(tmp_path: Path) -> None:
    db, _ = closed_period_with_a_delivery(tmp_path)
    _, said = run_split("deliveries", "--db", db)
    assert said == f"database: {tmp_path / 'm.db'}\n"


@pytest.mark.parametrize(
    "command",
    [
        ["deliveries"],
        ["keys", "list"],
        ["keys", "revoke", "1"],
        ["redeliver", "1"],
        ["rebuild"],
        ["usage", "--customer", "c"],
        ["void", "e1", "--reason", "r"],
        ["amend", "e1", "--reason", "r", "--value", "1"],
    ],
)
def test_a_database_that_does_not_exist_is_an_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("METERD_DATABASE_URL", raising=False)
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 1, result.output
    assert f"no database at {tmp_path / 'meterd.db'}" in result.stderr
    assert list(tmp_path.iterdir()) == []
    elsewhere = tmp_path / "other" / "m.db"
    result = CliRunner().invoke(main, [*command, "--db", f"sqlite:///{elsewhere}"])
    assert f"no database at {elsewhere}" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_usage_group_by_and_query(tmp_path: Path) -> None:
    import asyncio

    from meterd.ingest import NewEvent
    from meterd.storage.sqlite.store import SQLiteStore
    from meterd.timeutil import parse_iso_ms

    db = f"sqlite:///{tmp_path / 'm.db'}"
    config = tmp_path / "systemconfig.json"
    events = {"llm.tokens": {"op": "sum", "groupBy": ["model", "direction"]}}
    config.write_text(json.dumps({"periods": ["daily"], "events": events}))

    async def load() -> None:
        store = SQLiteStore(str(tmp_path / "m.db"))
        await store.open()
        ts = parse_iso_ms("2025-01-15T10:00:00Z")
        rows = [(7, b'{"model":"a","direction":"in"}'), (5, b'{"model":"a","direction":"out"}')]
        rows.append((1, b'{"model":"b"}'))
        await store.ingest(
            [
                NewEvent(f"e{i}", "llm.tokens", "cus_9", v, meta, ts, ts)
                for i, (v, meta) in enumerate(rows)
            ]
        )
        await store.close()

    asyncio.run(load())
    common = ["--config", str(config), "--db", db]
    shown = run(
        "usage",
        "--customer",
        "cus_9",
        "--at",
        "2025-01-15T12:00:00Z",
        "--group-by",
        "model",
        *common,
    )
    assert re.search(r"llm\.tokens\s*│\s*│\s*13\s*│\s*3", shown), shown
    assert re.search(r"model=a\s*│\s*12\s*│\s*2", shown), shown
    assert re.search(r"model=b\s*│\s*1\s*│\s*1", shown), shown
    csv_text, _ = run_split(
        "query",
        "--meter",
        "llm.tokens",
        "--from",
        "2025-01-15T00:00:00Z",
        "--to",
        "2025-01-16T00:00:00Z",
        "--group-by",
        "customerId",
        "--group-by",
        "model",
        "--filter",
        "model:a",
        "--csv",
        *common,
    )
    assert csv_text.splitlines() == [
        "windowStart,windowEnd,customerId,model,value,count",
        "2025-01-15T00:00:00.000Z,2025-01-16T00:00:00.000Z,cus_9,a,12,2",
    ]
    bad = CliRunner().invoke(main, ["query", "--meter", "nope", *common])
    assert bad.exit_code != 0 and "meter:" in bad.output


def test_void_and_amend(tmp_path: Path) -> None:
    import asyncio

    from meterd.ingest import NewEvent
    from meterd.storage.sqlite.store import SQLiteStore
    from meterd.timeutil import parse_iso_ms

    db = f"sqlite:///{tmp_path / 'm.db'}"
    config = tmp_path / "systemconfig.json"
    config.write_text(json.dumps({"periods": ["daily"], "events": {"api.calls": {"op": "sum"}}}))
    ts = parse_iso_ms("2025-01-15T10:00:00Z")

    async def load() -> None:
        store = SQLiteStore(str(tmp_path / "m.db"))
        await store.open()
        await store.ingest(
            [NewEvent(f"e{i}", "api.calls", "cus_1", 2, None, ts, ts) for i in (1, 2)]
        )
        await store.close()

    async def detail(event_id: str) -> tuple[str | None, str | None]:
        store = SQLiteStore(str(tmp_path / "m.db"))
        await store.open()
        try:
            found = await store.get_event(event_id)
        finally:
            await store.close()
        assert found is not None and found.voided is not None
        return found.voided.key.name, found.voided.replaced_by

    asyncio.run(load())
    assert "Voided e1" in run("void", "e1", "--reason", "duplicate", "--db", db)
    out = run(
        "amend", "e2", "--reason", "typo", "--value", "20", "--config", str(config), "--db", db
    )
    replaced = re.search(r"replaced by (\S+) ", out)
    assert replaced is not None, out
    name, replaced_by = asyncio.run(detail("e2"))
    assert name is not None and name.startswith("cli:") and replaced_by == replaced[1]
    args = ["--customer", "cus_1", "--at", "2025-01-15T12:00:00Z", "--period", "daily"]
    shown = run("usage", *args, "--config", str(config), "--db", db)
    assert re.search(r"api\.calls\s*│\s*20\s*│\s*1", shown), shown
    again = CliRunner().invoke(main, ["amend", "e2", "--reason", "x", "--value", "3", "--db", db])
    assert again.exit_code != 0 and "voided" in again.output
    missing = CliRunner().invoke(main, ["void", "nope", "--reason", "x", "--db", db])
    assert missing.exit_code != 0 and "nope" in missing.output
