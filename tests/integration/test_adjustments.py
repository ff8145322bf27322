"""The revision hook: an adjustment invoice for the difference, in the revision's
transaction, on both backends (the corrections work calls it when it writes revisions)."""

from __future__ import annotations

import httpx
import msgspec
import psycopg
import pytest

from meterd.aggregation import AggregationRow, Totals
from meterd.closing import PeriodCloser
from meterd.config.model import SystemConfig
from meterd.invoices import period_invoicing
from meterd.storage.base import AggregationQuery, InvoiceQuery, Store
from meterd.storage.postgres import invoicing as postgres_invoicing
from meterd.storage.postgres.migrate import PACKAGE as POSTGRES
from meterd.storage.postgres.store import PostgresStore
from meterd.storage.sqlfiles import read_queries
from meterd.storage.sqlite import invoicing as sqlite_invoicing
from meterd.storage.sqlite.migrate import PACKAGE as SQLITE
from meterd.storage.sqlite.store import SQLiteStore
from meterd.timeutil import now_ms
from tests.conftest import make_config
from tests.plans_support import DAILY_JPY, close_until_done, plans_for

DAY_MS = 86_400_000


@pytest.fixture
def config() -> SystemConfig:
    base = make_config()
    return msgspec.structs.replace(base, plans=plans_for(base, {"daily": DAILY_JPY}))


async def revise(store: Store, config: SystemConfig, row: AggregationRow, at: int) -> int:
    invoicing = period_invoicing(config, stripe=True)
    assert invoicing is not None
    if isinstance(store, SQLiteStore):
        sql = read_queries(SQLITE)["insert_delivery"]
        return await store.writer.call(
            lambda conn: sqlite_invoicing.write_adjustments(
                conn, invoicing=invoicing, rows=[row], delivery_sql=sql, now_ms=at
            )
        )
    assert isinstance(store, PostgresStore)
    async with await psycopg.AsyncConnection.connect(store.url) as conn, conn.transaction():
        return await postgres_invoicing.write_adjustments(
            conn,
            invoicing=invoicing,
            rows=[row],
            delivery_sql=read_queries(POSTGRES)["insert_deliveries"],
            now_ms=at,
        )


async def test_a_revision_after_invoicing_adds_one_adjustment_invoice(
    client: httpx.AsyncClient, store: Store, config: SystemConfig
) -> None:
    await client.put("/customers/acme", json={"plan": "daily"})
    for value in (1, 2):
        await client.post("/usage/api.calls", json={"customerId": "acme", "value": value})
    at = now_ms() + DAY_MS + 3_600_000
    await close_until_done(PeriodCloser(store, config), at)
    [first] = await store.list_invoices(InvoiceQuery(customer_id="acme"))
    assert str(first.total) == "5"  # 3 × 1.5 yen, rounded half-up
    [record] = await store.list_aggregations(AggregationQuery(customer_id="acme", period="daily"))
    # A late event or a correction: the day now holds 5 calls (7.5 → 8 yen).
    revised = msgspec.structs.replace(record, totals=Totals({"api.calls": 5}, {"api.calls": 3}, 3))
    assert await revise(store, config, revised, at + 1) == 1
    assert await revise(store, config, revised, at + 2) == 0  # nothing left to adjust

    invoices = (await client.get("/invoices", params={"customerId": "acme"})).json()
    adjustment = next(i for i in invoices if i["revision"] == 2)
    assert (adjustment["total"], adjustment["totalMinorUnits"]) == ("3", 3)
    assert [line["amount"] for line in adjustment["lines"]] == ["8", "-5"]
    assert adjustment["status"] == "draft"
    assert adjustment["nextAttemptAt"] is not None  # due for Stripe
    deliveries = (await client.get("/deliveries")).json()
    assert [d["aggregationId"] for d in deliveries].count(adjustment["id"]) == 1
