"""Per-group prices (`byGroup`) for meters with `groupBy`: preview and invoice at close."""

from __future__ import annotations

import httpx
import msgspec
import pytest

from meterd.closing import PeriodCloser
from meterd.config.model import EventTypeConfig, PeriodConfig, SystemConfig
from meterd.storage.base import Store
from meterd.timeutil import now_ms
from tests.conftest import make_config
from tests.plans_support import close_until_done, plans_for

DAY_MS = 86_400_000
TOKENS_PLAN = {
    "currency": "usd",
    "period": "daily",
    "charges": {
        "llm.tokens": {
            "model": "per_unit",
            "unitPrice": "0.001",
            "byGroup": {"model": {"gpt-4o": {"unitPrice": "0.01"}}},
        }
    },
}


@pytest.fixture
def config() -> SystemConfig:
    base = make_config(
        periods=(PeriodConfig("daily"),),
        events={"llm.tokens": EventTypeConfig("sum", group_by=("model",))},
    )
    return msgspec.structs.replace(base, plans=plans_for(base, {"tokens": TOKENS_PLAN}))


async def test_groups_priced_on_their_own_lines_in_preview_and_invoice(
    client: httpx.AsyncClient, store: Store, config: SystemConfig
) -> None:
    await client.put("/customers/acme", json={"plan": "tokens"})
    for model, tokens in (("gpt-4o", 1000), ("gpt-4o", 500), ("mini", 2000)):
        answer = await client.post(
            "/usage/llm.tokens",
            json={"customerId": "acme", "value": tokens, "metadata": {"model": model}},
        )
        assert answer.status_code == 201, answer.text
    # gpt-4o: 1,500 × 0.01 = 15.00; the other groups at the meter's price: 2,000 × 0.001.
    preview = (await client.get("/customers/acme/invoice-preview")).json()
    assert [(line["quantity"], line["amount"]) for line in preview["lines"]] == [
        ("1500", "15.00"),
        ("2000", "2.00"),
    ]
    assert preview["total"] == "17.00"

    await close_until_done(PeriodCloser(store, config), now_ms() + DAY_MS + 3_600_000)
    [invoice] = (await client.get("/invoices", params={"customerId": "acme"})).json()
    assert [(line["quantity"], line["amount"]) for line in invoice["lines"]] == [
        ("1500", "15.00"),
        ("2000", "2.00"),
    ]
    assert invoice["total"] == "17.00"
