"""Pricing: a plan and a period's usage in, an invoice's lines out. Pure and exact.

Every amount is a `Decimal`. Each line is rounded half-up to the currency's minor unit
(cents for usd, whole yen for jpy, fils for kwd); the total is the sum of the rounded
lines, raised to the plan's minimum by a line of its own, so the lines always add up to
the total (a payment provider gets the same lines and reaches the same total).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from typing import Literal

import msgspec

from meterd.config.plans import CURRENCY_EXPONENTS, Charge, Plan, PriceOverride, Tier

LineKind = Literal["base_fee", "usage", "minimum"]
Quantity = Decimal | int | float


class TierApplied(msgspec.Struct, frozen=True, rename="camel"):
    """The part of a quantity one tier priced: quantities above `from_` up to `up_to`."""

    from_: Decimal = msgspec.field(name="from")
    up_to: int | None
    quantity: Decimal
    unit_price: Decimal
    flat_price: Decimal
    amount: Decimal  # exact, before the line is rounded


class InvoiceLine(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    """One priced line: what was counted, how it was priced and what it costs."""

    kind: LineKind
    description: str
    amount: Decimal  # rounded to the currency's minor unit
    meter: str | None = None
    model: str | None = None
    quantity: Decimal | None = None
    unit_price: Decimal | None = None
    package_size: int | None = None
    packages: Decimal | None = None
    tiers: tuple[TierApplied, ...] | None = None
    dimensions: dict[str, str | None] | None = None


class GroupUsage(msgspec.Struct, frozen=True):
    """One group's quantity of a meter with `groupBy` (meters v2)."""

    dimensions: dict[str, str | None]
    quantity: Quantity


class PricedInvoice(msgspec.Struct, frozen=True):
    currency: str
    lines: tuple[InvoiceLine, ...]
    total: Decimal


def minor_unit(currency: str) -> Decimal:
    """The smallest amount of `currency`: 0.01 for usd, 1 for jpy, 0.001 for kwd."""
    return Decimal(1).scaleb(-CURRENCY_EXPONENTS[currency])


def round_money(amount: Decimal, currency: str) -> Decimal:
    """`amount` rounded half-up (away from zero at .5) to the currency's minor unit."""
    return amount.quantize(minor_unit(currency), rounding=ROUND_HALF_UP)


def to_minor_units(amount: Decimal, currency: str) -> int:
    """A rounded amount as an integer count of minor units (what Stripe's `amount` takes)."""
    return int(round_money(amount, currency).scaleb(CURRENCY_EXPONENTS[currency]))


def as_decimal(value: Quantity) -> Decimal:
    # str() of a float is its shortest round-trip text: 0.1 stays 0.1, not 0.1000000000000000055.
    return value if isinstance(value, Decimal) else Decimal(str(value))


def price_plan(
    plan: Plan,
    *,
    usage: Mapping[str, Quantity],
    groups: Mapping[str, Sequence[GroupUsage]] | None = None,
) -> PricedInvoice:
    """The invoice for one period of `plan`, given each meter's period value.

    `groups` holds per-group values of meters with `groupBy`; a charge with `byGroup`
    prices the groups it names on their own lines and the other groups together.
    Meters without a charge are not priced; charges without usage are priced at 0.
    """
    currency = plan.currency
    lines: list[InvoiceLine] = []
    if plan.base_fee:
        lines.append(
            InvoiceLine(
                kind="base_fee",
                description=f"{plan.name}: base fee",
                amount=round_money(plan.base_fee, currency),
            )
        )
    for meter, charge in plan.charges.items():
        meter_groups = (groups or {}).get(meter)
        if charge.by_group and meter_groups:
            lines.extend(_group_lines(meter, charge, meter_groups, currency))
        else:
            lines.append(price_charge(meter, charge, as_decimal(usage.get(meter, 0)), currency))
    total = sum((line.amount for line in lines), Decimal(0))
    minimum = round_money(plan.minimum, currency)
    if total < minimum:
        lines.append(
            InvoiceLine(
                kind="minimum",
                description=f"{plan.name}: minimum charge of {minimum} {currency.upper()}",
                amount=minimum - total,
            )
        )
        total = minimum
    return PricedInvoice(currency=currency, lines=tuple(lines), total=round_money(total, currency))


def price_charge(
    meter: str,
    charge: Charge,
    quantity: Decimal,
    currency: str,
    dimensions: dict[str, str | None] | None = None,
) -> InvoiceLine:
    """One meter's line under one charge."""
    label = meter if dimensions is None else f"{meter} {_dimensions_label(dimensions)}"
    if charge.model == "per_unit":
        return InvoiceLine(
            kind="usage",
            description=f"{label}: {quantity} × {charge.unit_price}",
            amount=round_money(quantity * charge.unit_price, currency),
            meter=meter,
            model=charge.model,
            quantity=quantity,
            unit_price=charge.unit_price,
            dimensions=dimensions,
        )
    if charge.model == "package":
        packages = (quantity / charge.package_size).to_integral_value(rounding=ROUND_CEILING)
        packages = max(packages, Decimal(0))
        return InvoiceLine(
            kind="usage",
            description=(
                f"{label}: {quantity} in {packages} package(s) of {charge.package_size}"
                f" × {charge.package_price}"
            ),
            amount=round_money(packages * charge.package_price, currency),
            meter=meter,
            model=charge.model,
            quantity=quantity,
            unit_price=charge.package_price,
            package_size=charge.package_size,
            packages=packages,
            dimensions=dimensions,
        )
    applied = (
        graduated_tiers(charge.tiers, quantity)
        if charge.model == "graduated"
        else volume_tier(charge.tiers, quantity)
    )
    exact = sum((tier.amount for tier in applied), Decimal(0))
    return InvoiceLine(
        kind="usage",
        description=f"{label}: {quantity}, {charge.model} tiers",
        amount=round_money(exact, currency),
        meter=meter,
        model=charge.model,
        quantity=quantity,
        unit_price=applied[-1].unit_price if len(applied) == 1 else None,
        tiers=tuple(applied),
        dimensions=dimensions,
    )


def graduated_tiers(tiers: Sequence[Tier], quantity: Decimal) -> list[TierApplied]:
    """Each tier prices the part of `quantity` inside it; a tier's flat price applies once
    any quantity reaches it. Zero usage applies no tier."""
    applied = []
    lower = Decimal(0)
    for tier in tiers:
        if quantity <= lower:
            break
        upper = quantity if tier.up_to is None else min(quantity, Decimal(tier.up_to))
        part = upper - lower
        applied.append(
            TierApplied(
                from_=lower,
                up_to=tier.up_to,
                quantity=part,
                unit_price=tier.unit_price,
                flat_price=tier.flat_price,
                amount=part * tier.unit_price + tier.flat_price,
            )
        )
        if tier.up_to is None:
            break
        lower = Decimal(tier.up_to)
    return applied


def volume_tier(tiers: Sequence[Tier], quantity: Decimal) -> list[TierApplied]:
    """The one tier whose range holds `quantity` prices all of it (a quantity exactly at
    `upTo` is inside that tier). Zero usage applies no tier."""
    if quantity <= 0:
        return []
    lower = Decimal(0)
    for tier in tiers:
        if tier.up_to is None or quantity <= tier.up_to:
            return [
                TierApplied(
                    from_=lower,
                    up_to=tier.up_to,
                    quantity=quantity,
                    unit_price=tier.unit_price,
                    flat_price=tier.flat_price,
                    amount=quantity * tier.unit_price + tier.flat_price,
                )
            ]
        lower = Decimal(tier.up_to)
    raise ValueError("the last tier must be open-ended (upTo null)")


def _group_lines(
    meter: str, charge: Charge, groups: Sequence[GroupUsage], currency: str
) -> list[InvoiceLine]:
    lines = []
    rest = Decimal(0)
    for group in sorted(
        groups, key=lambda g: sorted((k, v or "") for k, v in g.dimensions.items())
    ):
        override = _override_for(charge, group.dimensions)
        if override is None:
            rest += as_decimal(group.quantity)
            continue
        lines.append(
            price_charge(
                meter,
                _with_override(charge, override),
                as_decimal(group.quantity),
                currency,
                dimensions=group.dimensions,
            )
        )
    if rest or not lines:
        lines.append(price_charge(meter, charge, rest, currency))
    return lines


def _group_order(group: GroupUsage) -> list[tuple[str, str]]:
    return sorted((k, "" if v is None else v) for k, v in group.dimensions.items())


def _override_for(charge: Charge, dimensions: Mapping[str, str | None]) -> PriceOverride | None:
    for dimension, values in charge.by_group.items():
        value = dimensions.get(dimension)
        if value is not None and value in values:
            return values[value]
    return None


def _with_override(charge: Charge, override: PriceOverride) -> Charge:
    return msgspec.structs.replace(
        charge,
        unit_price=charge.unit_price if override.unit_price is None else override.unit_price,
        tiers=charge.tiers if override.tiers is None else override.tiers,
        package_size=(
            charge.package_size if override.package_size is None else override.package_size
        ),
        package_price=(
            charge.package_price if override.package_price is None else override.package_price
        ),
        by_group={},
    )


def _dimensions_label(dimensions: Mapping[str, str | None]) -> str:
    return "(" + ", ".join(f"{k}={v}" for k, v in sorted(dimensions.items())) + ")"
