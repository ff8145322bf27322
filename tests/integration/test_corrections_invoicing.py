"""A correction after a period was invoiced: its revision brings one adjustment invoice
for the difference, in the revision's transaction, on both backends."""

from __future__ import annotations

import httpx
import msgspec
import pytest

from meterd.closing import PeriodCloser
from meterd.config.model import SystemConfig
from meterd.storage.base import InvoiceQuery, Store
from meterd.timeutil import now_ms
from tests.conftest import make_config
from tests.plans_support import DAILY_JPY, close_until_done, plans_for

DAY_MS = 86_400_000


@pytest.fixture
def config() -> SystemConfig:
    base = make_config()
    return msgspec.structs.replace(base, plans=plans_for(base, {"daily": DAILY_JPY}))


async def test_a_void_after_invoicing_writes_one_adjustment_invoice(
    client: httpx.AsyncClient, store: Store, config: SystemConfig
) -> None:
    await client.put("/customers/acme", json={"plan": "daily"})
    ids = []
    for value in (1, 2, 4):
        answer = await client.post("/usage/api.calls", json={"customerId": "acme", "value": value})
        ids.append(answer.json()["id"])
    at = now_ms() + DAY_MS + 3_600_000
    closer = PeriodCloser(store, config)
    await close_until_done(closer, at)
    [first] = await store.list_invoices(InvoiceQuery(customer_id="acme"))

    voided = await client.post(f"/events/{ids[2]}/void", json={"reason": "sent twice"})
    assert voided.status_code == 200, voided.text
    assert await closer.revise_touched(at + 1) >= 1
    assert await closer.revise_touched(at + 2) == 0
    invoices = await store.list_invoices(InvoiceQuery(customer_id="acme"))
    assert len(invoices) == 2
    adjustment = next(invoice for invoice in invoices if invoice.revision == 2)
    # 7 calls at 1.5 yen were billed 11 (10.5 rounded half-up); 3 calls cost 5 (4.5):
    # the adjustment is the difference, -6.
    assert (str(first.total), str(adjustment.total)) == ("11", "-6")
    deliveries = await store.list_deliveries(status=None, limit=1000, before_id=None)
    assert [d.aggregation_id for d in deliveries].count(adjustment.id) == 1
