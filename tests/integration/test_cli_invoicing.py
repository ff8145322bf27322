"""`meterd customers` and `meterd invoices` on a real database file."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from click.testing import CliRunner

from meterd.cli import main
from meterd.closing import PeriodCloser
from meterd.config.loader import load_config
from meterd.ingest import NewEvent
from meterd.storage.base import InvoiceAttempt
from meterd.storage.sqlite.store import SQLiteStore
from meterd.timeutil import now_ms
from tests.plans_support import DAILY_JPY, close_until_done

DAY_MS = 86_400_000


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner(env={"COLUMNS": "300"}).invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def run(*args: str) -> str:
    code, output = invoke(*args)
    assert code == 0, output
    return output


def test_customers_and_invoices_from_the_command_line(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'm.db'}"
    config_file = tmp_path / "systemconfig.json"
    config_file.write_text(
        json.dumps(
            {
                "periods": ["daily", "monthly"],
                "events": {"api.calls": {"op": "sum"}},
                "plans": {"daily": DAILY_JPY},
                "invoicing": {"stripe": {"apiBase": "http://127.0.0.1:9"}},
            }
        )
    )
    conf = ["--config", str(config_file), "--db", db]
    created = run(
        "customers", "set", "acme", "--plan", "daily", "--stripe-customer", "cus_1", *conf
    )
    assert "Created customer acme: plan daily" in created
    code, refused = invoke("customers", "set", "acme", "--plan", "gold", *conf)
    assert code != 0
    assert "plan: 'gold' is not a configured plan (daily)" in refused
    listed = run("customers", "list", "--db", db)
    assert "acme" in listed and "daily" in listed and "cus_1" in listed

    async def close_and_fail() -> str:
        store = SQLiteStore(str(tmp_path / "m.db"))
        await store.open()
        try:
            now = now_ms()
            await store.ingest([NewEvent("e1", "api.calls", "acme", 3, None, now, now)])
            await close_until_done(PeriodCloser(store, load_config(config_file)), now + 2 * DAY_MS)
            [invoice] = await store.claim_invoices(now_ms=now + 2 * DAY_MS, limit=5, lease_ms=1)
            await store.finish_invoice_attempt(
                InvoiceAttempt(invoice.id, "failed", now, last_error="Stripe answered 500: down")
            )
            return invoice.id
        finally:
            await store.close()

    invoice_id = asyncio.run(close_and_fail())
    shown = run("invoices", "list", "--status", "failed", "--db", db)
    assert invoice_id in shown
    assert "5 JPY" in shown  # 3 × 1.5 = 4.5, rounded half-up to whole yen
    assert "Stripe answered 500: down" in shown
    assert "is due now" in run("invoices", "resend", invoice_id, "--db", db)
    assert invoice_id in run("invoices", "list", "--status", "draft", "--db", db)
    code, missing = invoke("invoices", "resend", "inv_nope", "--db", db)
    assert code != 0 and "no invoice" in missing
