"""The console's customer page shows the entitlement service's answer."""

from __future__ import annotations

import re

import httpx

from tests.integration.console_support import sign_in


async def test_the_customer_page_shows_limits_usage_and_access(client: httpx.AsyncClient) -> None:
    limits = {"api.calls": {"period": "daily", "limit": 10}}
    assert (await client.put("/customers/acme", json={"plan": None, "limits": limits})).is_success
    sent = await client.post("/usage/api.calls", json={"customerId": "acme", "value": 12})
    assert sent.status_code == 201
    entitled = (await client.get("/customers/acme/entitlements/api.calls")).json()
    del client.headers["x-apikey"]  # the console signs in with a session, not the header
    await sign_in(client)
    page = await client.get("/console/customers/acme")
    assert page.status_code == 200
    table = page.text[page.text.index('id="entitlements-heading"') :]
    row = re.search(r"<td>api.calls</td>\s*<td>daily</td>(.*?)</tr>", table, re.S)
    assert row is not None
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row[1], re.S)
    assert cells == [str(entitled["usage"]), "10", "0", "<strong>no</strong>"]
    other = re.search(r"<td>storage.bytes</td>\s*<td>monthly</td>(.*?)</tr>", table, re.S)
    assert other is not None and "none" in other[1] and "yes" in other[1]
