"""Entitlements: may a customer still use a meter this period, and how much is left.

The service behind `GET /customers/{id}/entitlements[/{meter}]`, `meterd entitlements`
and the alert check. Usage is live: read from the rollups, so it counts every
acknowledged event. A meter without a limit is always allowed (`limit` null).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec

from meterd.aggregation import default_period
from meterd.config.model import Op, SystemConfig
from meterd.customers import is_customer_id, plan_in_force
from meterd.errors import NotFound
from meterd.limits import Limit, has_access, limits_of, remaining
from meterd.periods import PeriodBounds, PeriodCalendar
from meterd.storage.base import CustomerRecord, Store
from meterd.timeutil import format_ms
from meterd.usage import usage_of


class EntitlementOut(msgspec.Struct, rename="camel"):
    """One meter of one customer in the period its limit counts (or the default period)."""

    meter: str
    period: str
    period_start: str
    period_end: str
    usage: int | float
    limit: int | float | None
    remaining: int | float | None
    has_access: bool


class EntitlementsOut(msgspec.Struct, rename="camel"):
    """Every configured meter's entitlement of one customer."""

    customer_id: str
    entitlements: list[EntitlementOut]


def limits_for(
    customer: CustomerRecord | None, *, config: SystemConfig, now_ms: int
) -> dict[str, Limit]:
    """A customer's limits by meter at `now_ms` (its own over its plan's allowances)."""
    if customer is None:
        return {}
    assignment = plan_in_force(customer.plans, now_ms)
    plan = None if assignment is None else config.plans.get(assignment.plan or "")
    return limits_of(customer_limits=customer.limits, plan=plan, thresholds=config.alert_thresholds)


async def live_usage(
    store: Store,
    *,
    customer_id: str,
    period: str,
    bounds: PeriodBounds,
    ops: Mapping[str, Op],
    now_ms: int,
) -> dict[str, int | float]:
    """A customer's live value of every meter in one period (the usage service's)."""
    found = await usage_of(
        store, ops=ops, customer_id=customer_id, period=period, bounds=bounds, now_ms=now_ms
    )
    return found.events


async def entitlements(
    store: Store,
    *,
    customer_id: str,
    meters: Sequence[str] | None = None,
    config: SystemConfig,
    calendars: Mapping[str, PeriodCalendar],
    ops: Mapping[str, Op],
    now_ms: int,
) -> list[EntitlementOut]:
    """The entitlement of each of `meters` (default: every configured meter), by name.

    A customer meterd has no record of is metered without limits. Raises NotFound for
    a customer id no event could carry or a meter that is not configured.
    """
    if not is_customer_id(customer_id):
        raise NotFound(f"no customer {customer_id!r}")
    wanted = sorted(config.events) if meters is None else list(meters)
    for meter in wanted:
        if meter not in config.events:
            raise NotFound(f"no meter {meter!r} (configured: {', '.join(sorted(config.events))})")
    customer = await store.get_customer(customer_id)
    limits = {
        meter: limit
        for meter, limit in limits_for(customer, config=config, now_ms=now_ms).items()
        if limit.period in calendars  # a period dropped from the config since: no limit
    }
    fallback = _fallback_period(customer, config=config, calendars=calendars, now_ms=now_ms)
    period_of = {meter: limits[meter].period if meter in limits else fallback for meter in wanted}
    usage_in: dict[str, tuple[PeriodBounds, dict[str, int | float]]] = {}
    for period in sorted(set(period_of.values())):
        bounds = calendars[period].bounds_at(now_ms)
        usage_in[period] = (
            bounds,
            await live_usage(
                store,
                customer_id=customer_id,
                period=period,
                bounds=bounds,
                ops=ops,
                now_ms=now_ms,
            ),
        )
    answers = []
    for meter in wanted:
        bounds, values = usage_in[period_of[meter]]
        usage = values.get(meter, 0)
        limit = limits.get(meter)
        answers.append(
            EntitlementOut(
                meter=meter,
                period=period_of[meter],
                period_start=format_ms(bounds.start_ms),
                period_end=format_ms(bounds.last_ms),
                usage=usage,
                limit=None if limit is None else limit.limit,
                remaining=remaining(limit, usage),
                has_access=has_access(limit, usage),
            )
        )
    return answers


async def entitlement(
    store: Store,
    *,
    customer_id: str,
    meter: str,
    config: SystemConfig,
    calendars: Mapping[str, PeriodCalendar],
    ops: Mapping[str, Op],
    now_ms: int,
) -> EntitlementOut:
    """One meter's entitlement: `hasAccess` is usage < limit (always true without a limit)."""
    (answer,) = await entitlements(
        store,
        customer_id=customer_id,
        meters=[meter],
        config=config,
        calendars=calendars,
        ops=ops,
        now_ms=now_ms,
    )
    return answer


def _fallback_period(
    customer: CustomerRecord | None,
    *,
    config: SystemConfig,
    calendars: Mapping[str, PeriodCalendar],
    now_ms: int,
) -> str:
    """The period a meter without a limit is shown for: the plan's, else monthly."""
    assignment = None if customer is None else plan_in_force(customer.plans, now_ms)
    plan = None if assignment is None else config.plans.get(assignment.plan or "")
    if plan is not None and plan.period in calendars:
        return plan.period
    return default_period(calendars)
