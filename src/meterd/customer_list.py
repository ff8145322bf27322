"""The customer list: ids that have sent events, found by search, with their current usage."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from meterd.config.model import Op
from meterd.periods import PeriodCalendar
from meterd.storage.base import Store
from meterd.usage import UsageOut, usage_of


class CustomerPage(msgspec.Struct, frozen=True):
    """One page of customers in id order; `next_after` continues the listing."""

    usages: list[UsageOut]
    next_after: str | None


async def customers_page(
    store: Store,
    *,
    ops: Mapping[str, Op],
    period: str,
    calendar: PeriodCalendar,
    search: str | None,
    after: str,
    limit: int,
    now_ms: int,
) -> CustomerPage:
    """Customers whose id contains `search`, after `after`, with this period's usage."""
    ids = await store.list_customer_ids(search=search or None, after=after, limit=limit + 1)
    bounds = calendar.bounds_at(now_ms)
    usages = [
        await usage_of(
            store, ops=ops, customer_id=customer_id, period=period, bounds=bounds, now_ms=now_ms
        )
        for customer_id in ids[:limit]
    ]
    return CustomerPage(usages, ids[limit - 1] if len(ids) > limit else None)
