"""A page's view of the store: identical reads while it renders are made once."""

from __future__ import annotations

import asyncio

from meterd.aggregation import calendars_for
from meterd.html.shared_reads import shared_reads
from meterd.ingest import NewEvent
from meterd.storage.base import Store
from meterd.timeutil import now_ms
from tests.conftest import make_config


async def test_identical_reads_share_one_result_and_others_do_not(open_store: Store) -> None:
    now = now_ms()
    await open_store.ingest([NewEvent("e1", "api.calls", "acme", 3, None, now, now)])
    page = shared_reads(open_store)
    daily = calendars_for(make_config())["daily"]
    day = daily.bounds_at(now)
    other = daily.bounds_at(day.end_ms)  # tomorrow
    first, again, elsewhere = await asyncio.gather(
        page.customer_partials("acme", day),
        page.customer_partials("acme", day),
        page.customer_partials("acme", other),
    )
    assert first is again and first["api.calls"].count == 1
    assert elsewhere is not first and elsewhere == {}
    # A later read of the same arguments answers the first one's result too.
    assert await page.customer_partials("acme", day) is first
    # Other methods pass through, unshared: a fresh page sees new events.
    assert (await page.get_event("e1")) is not None
    await open_store.ingest([NewEvent("e2", "api.calls", "acme", 4, None, now, now)])
    fresh = await shared_reads(open_store).customer_partials("acme", day)
    assert fresh["api.calls"].count == 2
