"""What a portal token shows: its customer's usage now (with groups and limits), the
invoice preview, and usage over recent periods."""

from __future__ import annotations

import msgspec

from meterd.aggregation import default_period, meters_for
from meterd.config.model import Op, SystemConfig
from meterd.entitlements import EntitlementOut, entitlements
from meterd.html.concurrent import concurrently
from meterd.html.planned import planned_preview
from meterd.html.shared_reads import shared_reads
from meterd.meters.values import GroupValue
from meterd.periods import PeriodCalendar
from meterd.portal_tokens import PortalGrant
from meterd.preview import PreviewOut
from meterd.storage.base import Store
from meterd.timeutil import format_ms
from meterd.usage import UsageOut, usage_history, usage_of

HISTORY_PERIODS = 12


class MeterUsage(msgspec.Struct, rename="camel"):
    meter: str
    value: int | float
    events: int


class PeriodValues(msgspec.Struct, rename="camel"):
    period_key: str
    period_start: str
    period_end: str
    values: dict[str, int | float]
    event_counts: dict[str, int]


class PortalUsage(msgspec.Struct, rename="camel"):
    """`/portal/{token}/usage.json`: the same numbers the portal page shows."""

    customer_id: str
    period: str
    period_key: str
    period_start: str
    period_end: str
    as_of: str
    expires_at: str
    meters: list[MeterUsage]
    # The granted meters with `groupBy`: each group's dimensions, value and event count.
    groups: dict[str, list[GroupValue]]
    # Each granted meter in its limit's period (`limit` null: none).
    entitlements: list[EntitlementOut]
    # The current plan period's invoice if it closed now; null without a plan, or when
    # the token does not cover every meter the plan charges for.
    invoice_preview: PreviewOut | None
    history: list[PeriodValues]


async def portal_usage(
    store: Store,
    *,
    grant: PortalGrant,
    config: SystemConfig,
    calendars: dict[str, PeriodCalendar],
    ops: dict[str, Op],
    now_ms: int,
) -> tuple[PortalUsage, UsageOut]:
    """The grant's customer in the default period; meters outside the grant are never read
    into the result (the ops passed on name only the granted ones)."""
    period = default_period(calendars)
    calendar = calendars[period]
    allowed = {meter: ops[meter] for meter in grant.meters}
    # Independent reads, run side by side: the store's readers work in parallel. The
    # services read some numbers alike (the period's usage): each is read once.
    store = shared_reads(store)
    usage, limits, preview, history = await concurrently(
        usage_of(
            store,
            ops=allowed,
            customer_id=grant.customer_id,
            period=period,
            bounds=calendar.bounds_at(now_ms),
            now_ms=now_ms,
            meters={m: meter for m, meter in meters_for(config).items() if m in allowed},
        ),
        entitlements(
            store,
            customer_id=grant.customer_id,
            meters=list(grant.meters),
            config=config,
            calendars=calendars,
            ops=allowed,
            now_ms=now_ms,
        ),
        _preview(store, grant=grant, config=config, calendars=calendars, ops=ops, now_ms=now_ms),
        usage_history(
            store,
            ops=allowed,
            customer_id=grant.customer_id,
            calendar=calendar,
            periods=HISTORY_PERIODS,
            now_ms=now_ms,
        ),
    )
    data = PortalUsage(
        customer_id=grant.customer_id,
        period=period,
        period_key=usage.period_key,
        period_start=usage.period_start,
        period_end=usage.period_end,
        as_of=usage.as_of,
        expires_at=format_ms(grant.expires_ms),
        meters=[
            MeterUsage(meter, usage.events.get(meter, 0), usage.event_counts.get(meter, 0))
            for meter in grant.meters
        ],
        groups={meter: found for meter, found in (usage.groups or {}).items() if meter in allowed},
        entitlements=limits,
        invoice_preview=preview,
        history=[
            PeriodValues(
                period_key=h.bounds.key,
                period_start=format_ms(h.bounds.start_ms),
                period_end=format_ms(h.bounds.last_ms),
                values=h.totals.events,
                event_counts=h.totals.event_counts,
            )
            for h in history
        ],
    )
    return data, usage


async def _preview(
    store: Store,
    *,
    grant: PortalGrant,
    config: SystemConfig,
    calendars: dict[str, PeriodCalendar],
    ops: dict[str, Op],
    now_ms: int,
) -> PreviewOut | None:
    """The invoice preview a grant may see: its lines name meters and their usage, so
    only a grant that holds every meter the customer's plan charges for sees it."""
    granted = set(grant.meters)
    if not any(set(plan.charges) <= granted for plan in config.plans.values()):
        return None  # no plan could pass: spare the read
    preview = await planned_preview(
        store,
        customer_id=grant.customer_id,
        config=config,
        calendars=calendars,
        ops=ops,
        now_ms=now_ms,
    )
    if preview is None or not set(config.plans[preview.plan].charges) <= granted:
        return None
    # Its usage lists every meter; keep the granted ones.
    usage = {meter: value for meter, value in preview.usage.items() if meter in granted}
    return msgspec.structs.replace(preview, usage=usage)
