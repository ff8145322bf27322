"""Customers: their plan (changes apply from the next plan period), Stripe id and limits.

The service behind `PUT/GET /customers`, the CLI and the invoice preview. `limits` is
validated for shape and stored as given; entitlements read it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec

from meterd.config.alerts import threshold_problem
from meterd.config.model import SystemConfig
from meterd.errors import InvalidRequest, ValidationFailed
from meterd.limits import watched
from meterd.periods import PeriodCalendar
from meterd.storage.base import CustomerRecord, PlanAssignment, Store
from meterd.timeutil import format_ms

CUSTOMER_KEYS = ("plan", "stripeCustomer", "limits")
LIMIT_KEYS = ("period", "limit", "alertThresholds")
MAX_ID_LENGTH = 256


class NextPlanOut(msgspec.Struct, rename="camel"):
    plan: str | None
    effective_from: str


class CustomerOut(msgspec.Struct, rename="camel"):
    """A customer: the plan billing its current period, and a change waiting for the next."""

    id: str
    plan: str | None
    plan_effective_from: str | None
    next_plan: NextPlanOut | None
    stripe_customer: str | None
    limits: msgspec.Raw | None
    created_at: str
    updated_at: str


class CustomerIn(msgspec.Struct, frozen=True):
    plan: str | None
    stripe_customer: str | None
    limits: bytes | None  # JSON text, validated


def plan_in_force(assignments: Sequence[PlanAssignment], at_ms: int) -> PlanAssignment | None:
    """The assignment deciding the plan at `at_ms` (its plan may be None: no plan)."""
    found = None
    for assignment in assignments:
        if assignment.effective_from_ms <= at_ms:
            found = assignment
    return found


def customer_out(customer: CustomerRecord, *, now_ms: int) -> CustomerOut:
    current = plan_in_force(customer.plans, now_ms)
    pending = [a for a in customer.plans if a.effective_from_ms > now_ms]
    if pending and current is not None and pending[-1].plan == current.plan:
        pending = []  # changed back before the change applied: nothing changes
    return CustomerOut(
        id=customer.id,
        plan=None if current is None else current.plan,
        plan_effective_from=None
        if current is None or current.plan is None
        else format_ms(current.effective_from_ms),
        next_plan=None
        if not pending
        else NextPlanOut(pending[-1].plan, format_ms(pending[-1].effective_from_ms)),
        stripe_customer=customer.stripe_customer,
        limits=None if customer.limits is None else msgspec.Raw(customer.limits),
        created_at=format_ms(customer.created_ms),
        updated_at=format_ms(customer.updated_ms),
    )


def parse_customer(body: bytes, config: SystemConfig) -> CustomerIn:
    """A `PUT /customers/{id}` body: `{"plan", "stripeCustomer"?, "limits"?}`."""
    try:
        document = msgspec.json.decode(body)
    except msgspec.DecodeError as error:
        raise InvalidRequest(f"the body is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise InvalidRequest('the body must be a JSON object like {"plan": "pro"}')
    for key in document:
        if key not in CUSTOMER_KEYS:
            raise ValidationFailed(
                f"{key}: unknown field (expected {', '.join(CUSTOMER_KEYS)})", field=key
            )
    plan = document.get("plan")
    if plan is not None and not isinstance(plan, str):
        raise ValidationFailed("plan: expected a plan name or null", field="plan")
    if plan is not None and plan not in config.plans:
        known = ", ".join(sorted(config.plans)) or "none configured"
        raise ValidationFailed(
            f"plan: {plan!r} is not a configured plan ({known})", field="plan", value=plan
        )
    stripe_customer = document.get("stripeCustomer")
    if stripe_customer is not None and (
        not isinstance(stripe_customer, str) or not 0 < len(stripe_customer) <= MAX_ID_LENGTH
    ):
        raise ValidationFailed(
            "stripeCustomer: expected a Stripe customer id like cus_... or null",
            field="stripeCustomer",
        )
    limits = document.get("limits")
    if limits is not None:
        _check_limits(limits, config)
    return CustomerIn(
        plan=plan,
        stripe_customer=stripe_customer,
        limits=None if limits is None else msgspec.json.encode(limits),
    )


def _check_limits(limits: object, config: SystemConfig) -> None:
    if not isinstance(limits, dict):
        raise ValidationFailed(
            'limits: expected an object like {"api.calls": {"period": "monthly", "limit": 1000}}',
            field="limits",
        )
    periods = [period.name for period in config.periods]
    for meter, entry in limits.items():
        field = f"limits.{meter}"
        if meter not in config.events:
            raise ValidationFailed(f"{field}: {meter!r} is not a configured meter", field=field)
        if not isinstance(entry, dict):
            raise ValidationFailed(f'{field}: expected {{"period", "limit"}}', field=field)
        for key in entry:
            if key not in LIMIT_KEYS:
                raise ValidationFailed(
                    f"{field}.{key}: unknown field (expected period, limit, alertThresholds)",
                    field=f"{field}.{key}",
                )
        if entry.get("period") not in periods:
            raise ValidationFailed(
                f"{field}.period: expected one of the configured periods ({', '.join(periods)})",
                field=f"{field}.period",
            )
        value = entry.get("limit")
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1e18:
            raise ValidationFailed(
                f"{field}.limit: expected a number of 0 or more", field=f"{field}.limit"
            )
        if "alertThresholds" in entry:
            problem = threshold_problem(entry["alertThresholds"])
            if problem is not None:
                path = f"{field}.alertThresholds"
                raise ValidationFailed(f"{path}: {problem}", field=path)


def is_customer_id(text: str) -> bool:
    """1 to 256 characters, none a control character (as ingest requires of customerId)."""
    return 0 < len(text) <= MAX_ID_LENGTH and not any(
        ord(char) < 32 or 127 <= ord(char) < 160 for char in text
    )


def check_customer_id(customer_id: str) -> str:
    if not is_customer_id(customer_id):
        raise InvalidRequest(
            f"customerId: must be 1 to {MAX_ID_LENGTH} characters, none a control character",
            field="customerId",
        )
    return customer_id


def next_assignment(
    existing: Sequence[PlanAssignment],
    plan: str | None,
    *,
    config: SystemConfig,
    calendars: Mapping[str, PeriodCalendar],
    now_ms: int,
) -> PlanAssignment | None:
    """The assignment a PUT makes, or None when the plan does not change.

    A change applies from the next period of the plan billing now; a customer billed by
    no plan gets the new plan from the start of that plan's current period.
    """
    latest = existing[-1].plan if existing else None
    if plan == latest:
        return None
    current = plan_in_force(existing, now_ms)
    billing = None if current is None else config.plans.get(current.plan or "")
    if billing is not None:
        start = calendars[billing.period].bounds_at(now_ms).end_ms
    elif plan is None:
        start = now_ms if current is None else current.effective_from_ms
    else:
        start = calendars[config.plans[plan].period].bounds_at(now_ms).start_ms
        if current is not None:
            # Never rewrite an assignment older than the one in force.
            start = max(start, current.effective_from_ms)
    return PlanAssignment(plan=plan, effective_from_ms=start)


async def put_customer(
    store: Store,
    *,
    customer_id: str,
    given: CustomerIn,
    config: SystemConfig,
    calendars: Mapping[str, PeriodCalendar],
    now_ms: int,
) -> tuple[CustomerRecord, bool]:
    """Create or replace a customer; returns it and whether it is new."""
    check_customer_id(customer_id)
    known = await store.get_customer(customer_id)
    assignment = next_assignment(
        () if known is None else known.plans,
        given.plan,
        config=config,
        calendars=calendars,
        now_ms=now_ms,
    )
    record = CustomerRecord(
        id=customer_id,
        stripe_customer=given.stripe_customer,
        limits=given.limits,
        created_ms=now_ms if known is None else known.created_ms,
        updated_ms=now_ms,
    )
    stored = await store.put_customer(record, assignment=assignment)
    # Ingest records touches only for customers with limits (for the alert check); a
    # crash between the two writes is mended by the sync at the next start.
    plan_names = [a.plan for a in stored.plans]
    await store.set_watched(
        customer_id,
        watched=watched(customer_limits=stored.limits, plans=config.plans, plan_names=plan_names),
        meters=sorted(config.events),
    )
    return stored, known is None
