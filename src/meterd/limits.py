"""Limits and alert thresholds: which limit applies to a customer's meter, and what crossed.

Pure. A customer's own `limits` (`PUT /customers/{id}`) win over the allowances of the
plan in force; an allowance is a limit over the plan's period, not free units. A
threshold (percent of the limit) is crossed when usage >= threshold% of the limit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from decimal import Decimal

import msgspec

from meterd.config.plans import Plan


class Limit(msgspec.Struct, frozen=True):
    """At most `limit` of `meter` per `period`; alerts at `thresholds` percent of it."""

    meter: str
    period: str
    limit: int | float
    thresholds: tuple[float, ...]


class UsageAlert(msgspec.Struct, frozen=True):
    """One threshold crossed by one customer's meter in one period."""

    customer_id: str
    meter: str
    period: str
    period_start_ms: int
    period_end_ms: int
    threshold: float
    usage: int | float
    limit: int | float
    created_ms: int

    @property
    def id(self) -> str:
        key = "\n".join(
            (
                self.customer_id,
                self.meter,
                self.period,
                str(self.period_start_ms),
                repr(self.threshold),
            )
        )
        return "alert_" + hashlib.sha256(key.encode()).hexdigest()[:24]


class _LimitIn(msgspec.Struct, frozen=True, rename="camel"):
    period: str
    limit: int | float
    alert_thresholds: list[float] | None = None


_limits_decoder = msgspec.json.Decoder(dict[str, _LimitIn])


def limits_of(
    *,
    customer_limits: bytes | None,
    plan: Plan | None,
    thresholds: Sequence[float],
) -> dict[str, Limit]:
    """Every limit of one customer by meter: its own `limits` over the plan's allowances.

    `customer_limits` is the JSON text `PUT /customers/{id}` validated and stored;
    `thresholds` are the config's `alertThresholds`, used where a limit gives none.
    """
    found: dict[str, Limit] = {}
    if plan is not None:
        for meter, allowance in plan.allowances.items():
            found[meter] = Limit(meter, plan.period, _number(allowance), tuple(thresholds))
    if customer_limits is not None:
        for meter, given in _limits_decoder.decode(customer_limits).items():
            own = given.alert_thresholds
            found[meter] = Limit(
                meter,
                given.period,
                given.limit,
                tuple(thresholds) if own is None else tuple(sorted(own)),
            )
    return found


def _number(amount: Decimal) -> int | float:
    return int(amount) if amount == amount.to_integral_value() else float(amount)


def crossed(limit: Limit, usage: int | float) -> list[float]:
    """The thresholds `usage` has reached, lowest first."""
    return [t for t in limit.thresholds if usage * 100 >= t * limit.limit]


def has_access(limit: Limit | None, usage: int | float) -> bool:
    return limit is None or usage < limit.limit


def remaining(limit: Limit | None, usage: int | float) -> int | float | None:
    if limit is None:
        return None
    left = limit.limit - usage
    return left if left > 0 else 0


def watched(
    *, customer_limits: bytes | None, plans: Mapping[str, Plan], plan_names: Sequence[str | None]
) -> bool:
    """Whether a customer has any limit now or under a plan it is assigned."""
    if customer_limits is not None and _limits_decoder.decode(customer_limits):
        return True
    return any(name is not None and name in plans and plans[name].allowances for name in plan_names)
