"""The invoice a customer's current plan period would get if it closed now, from live usage."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

import msgspec

from meterd.aggregation import meters_for
from meterd.config.model import Op, SystemConfig
from meterd.customers import plan_in_force
from meterd.errors import NotFound
from meterd.invoices import groups_of, usage_of
from meterd.meters.usage import customer_totals
from meterd.periods import PeriodCalendar
from meterd.pricing import InvoiceLine, price_plan, to_minor_units
from meterd.storage.base import Store
from meterd.timeutil import format_ms


class PreviewOut(msgspec.Struct, rename="camel"):
    """Every line explained: meter, quantity, model, tiers applied, unit price, amount."""

    customer_id: str
    plan: str
    period: str
    period_key: str
    period_start: str
    period_end: str
    currency: str
    lines: tuple[InvoiceLine, ...]
    total: Decimal
    total_minor_units: int
    usage: dict[str, int | float]
    as_of: str


async def invoice_preview(
    store: Store,
    *,
    customer_id: str,
    config: SystemConfig,
    calendars: Mapping[str, PeriodCalendar],
    ops: Mapping[str, Op],
    now_ms: int,
) -> PreviewOut:
    """Raises NotFound for an unknown customer or one without a plan."""
    customer = await store.get_customer(customer_id)
    if customer is None:
        raise NotFound(f"no customer {customer_id!r}: create it with PUT /customers/{{id}}")
    current = plan_in_force(customer.plans, now_ms)
    plan = None if current is None else config.plans.get(current.plan or "")
    if plan is None:
        raise NotFound(f"customer {customer_id!r} has no plan: it is metered, not invoiced")
    bounds = calendars[plan.period].bounds_at(now_ms)
    totals = await customer_totals(
        store, customer_id=customer_id, bounds=bounds, ops=ops, meters=meters_for(config)
    )
    usage = usage_of(totals)
    priced = price_plan(plan, usage=usage, groups=groups_of(totals))
    return PreviewOut(
        customer_id=customer_id,
        plan=plan.name,
        period=plan.period,
        period_key=bounds.key,
        period_start=format_ms(bounds.start_ms),
        period_end=format_ms(bounds.last_ms),
        currency=priced.currency,
        lines=priced.lines,
        total=priced.total,
        total_minor_units=to_minor_units(priced.total, priced.currency),
        usage=usage,
        as_of=format_ms(now_ms),
    )
