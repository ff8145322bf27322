"""One page, one read of each thing: identical store reads made while a page renders
run once.

A page calls several services that read the same numbers: the customer page's live
usage, its invoice preview (the plan's period is often the shown one), entitlements and
history all fold the same customer-period, and a meter with `groupBy` reads its raw
events for each. The services stay as the API calls them; the page hands them this view
of the store, which starts each distinct read once and gives every caller its result.
Only pure reads are shared, and only for the life of one page.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, cast

from meterd.storage.base import Store

SHARED = frozenset(
    {
        "customer_partials",
        "group_totals",
        "meter_aggregate",
        "meter_events",
        "levels_before",
        "watermark",
        "get_customer",
    }
)


class _SharedReads:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._started: dict[str, asyncio.Future[Any]] = {}

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._store, name)
        if name not in SHARED:
            return method
        return self._shared(name, method)

    def _shared(self, name: str, method: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
        def read(*args: Any, **kwargs: Any) -> asyncio.Future[Any]:
            # The arguments are plain values and frozen structs: their repr names the read.
            key = repr((name, args, sorted(kwargs.items())))
            started = self._started.get(key)
            if started is None:
                started = asyncio.ensure_future(method(*args, **kwargs))
                self._started[key] = started
            return started

        return read


def shared_reads(store: Store) -> Store:
    """`store` for one page: the reads in SHARED are made once per distinct arguments."""
    return cast(Store, _SharedReads(store))
