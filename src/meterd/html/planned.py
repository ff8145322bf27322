"""The invoice preview the console and the portal show: only for a customer on a plan."""

from __future__ import annotations

from collections.abc import Mapping

from meterd.config.model import Op, SystemConfig
from meterd.errors import NotFound
from meterd.periods import PeriodCalendar
from meterd.preview import PreviewOut, invoice_preview
from meterd.storage.base import Store


async def planned_preview(
    store: Store,
    *,
    customer_id: str,
    config: SystemConfig,
    calendars: Mapping[str, PeriodCalendar],
    ops: Mapping[str, Op],
    now_ms: int,
) -> PreviewOut | None:
    """`GET /customers/{id}/invoice-preview`'s answer, or None for a customer without a
    plan (metered, not invoiced) or one meterd has no record of."""
    if not config.plans:
        return None
    try:
        return await invoice_preview(
            store,
            customer_id=customer_id,
            config=config,
            calendars=calendars,
            ops=ops,
            now_ms=now_ms,
        )
    except NotFound:
        return None
