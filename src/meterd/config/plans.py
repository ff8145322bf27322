"""The `plans` and `invoicing` sections of `systemconfig.json`: parsed into typed structs.

Money is exact: prices are JSON strings ("0.001") or numbers, held as `Decimal`. Each
problem is reported with the JSON path it sits at (`plans.pro.charges."api.calls".tiers[1].upTo`),
so an invalid plan stops meterd at start with a message that leads to the exact key.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from decimal import Decimal, InvalidOperation
from typing import Literal

import msgspec

Model = Literal["per_unit", "graduated", "volume", "package"]
MODELS: tuple[Model, ...] = ("per_unit", "graduated", "volume", "package")

# ISO 4217 minor-unit exponents of the currencies meterd accepts (lower-case codes, as Stripe
# writes them). Currencies with other exponents than 2 are listed explicitly.
ZERO_DECIMAL = ("bif clp djf gnf isk jpy kmf krw pyg rwf ugx uyi vnd vuv xaf xof xpf").split()
THREE_DECIMAL = "bhd iqd jod kwd lyd omr tnd".split()
TWO_DECIMAL = (
    "aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bmd bnd bob brl bsd btn bwp byn "
    "bzd cad cdf chf cny cop crc cup cve czk dkk dop dzd egp ern etb eur fjd fkp gbp gel ghs "
    "gip gmd gtq gyd hkd hnl htg huf idr ils inr irr jmd kes kgs khr kpw kyd kzt lak lbp lkr "
    "lrd lsl mad mdl mga mkd mmk mnt mop mru mur mvr mwk mxn myr mzn nad ngn nio nok npr nzd "
    "pab pen pgk php pkr pln qar ron rsd rub sar sbd scr sdg sek sgd shp sle sll sos srd ssp "
    "stn svc syp szl thb tjs tmt top try ttd twd tzs uah usd uyu uzs ves wst xcd yer zar zmw zwl"
).split()
CURRENCY_EXPONENTS: dict[str, int] = {
    **{code: 2 for code in TWO_DECIMAL},
    **{code: 0 for code in ZERO_DECIMAL},
    **{code: 3 for code in THREE_DECIMAL},
}

PLAN_KEYS = ("currency", "period", "baseFee", "minimum", "charges", "allowances", "description")
CHARGE_KEYS = ("model", "unitPrice", "tiers", "packageSize", "packagePrice", "byGroup")
TIER_KEYS = ("upTo", "unitPrice", "flatPrice")
STRIPE_KEYS = ("apiKey", "apiBase", "autoAdvance")
INVOICING_KEYS = ("stripe",)
DEFAULT_STRIPE_API_BASE = "https://api.stripe.com"
_PLAN_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}", re.ASCII)


class Tier(msgspec.Struct, frozen=True):
    """Quantities up to `up_to` (inclusive; None: no end) at `unit_price`, plus `flat_price`."""

    up_to: int | None
    unit_price: Decimal
    flat_price: Decimal = Decimal(0)


class PriceOverride(msgspec.Struct, frozen=True):
    """A group's own prices (`byGroup`); fields left None keep the charge's."""

    unit_price: Decimal | None = None
    tiers: tuple[Tier, ...] | None = None
    package_size: int | None = None
    package_price: Decimal | None = None


class Charge(msgspec.Struct, frozen=True):
    """How one meter's period value is priced."""

    model: Model
    unit_price: Decimal = Decimal(0)
    tiers: tuple[Tier, ...] = ()
    package_size: int = 1
    package_price: Decimal = Decimal(0)
    # dimension -> group value -> override; applies once meters have `groupBy`.
    by_group: dict[str, dict[str, PriceOverride]] = {}


class Plan(msgspec.Struct, frozen=True):
    name: str
    currency: str
    period: str
    base_fee: Decimal = Decimal(0)
    minimum: Decimal = Decimal(0)
    charges: dict[str, Charge] = {}
    allowances: dict[str, Decimal] = {}

    @property
    def exponent(self) -> int:
        return CURRENCY_EXPONENTS[self.currency]


class StripeConfig(msgspec.Struct, frozen=True):
    api_key: str | None = None
    api_base: str = DEFAULT_STRIPE_API_BASE
    auto_advance: bool | None = None


class InvoicingConfig(msgspec.Struct, frozen=True):
    stripe: StripeConfig | None = None


Path = tuple[str | int, ...]


class PlanProblem(msgspec.Struct, frozen=True):
    location: Path  # keys and indexes from the document's top
    message: str


class _Problems:
    def __init__(self) -> None:
        self.found: list[PlanProblem] = []

    def add(self, path: Path, message: str) -> None:
        self.found.append(PlanProblem(path, message))

    def obj(self, value: object, path: Path) -> dict[str, object] | None:
        if isinstance(value, dict):
            return value
        self.add(path, f"expected an object, got {_describe(value)}")
        return None

    def keys(self, fields: Mapping[str, object], path: Path, allowed: Collection[str]) -> None:
        for key in fields:
            if key not in allowed and not key.startswith(("$", "_")):
                self.add((*path, key), f"unknown key (expected one of {', '.join(allowed)})")


def parse_plans(
    value: object, *, meters: Collection[str], periods: Collection[str]
) -> tuple[dict[str, Plan], list[PlanProblem]]:
    """The `plans` object, checked against the configured meters and periods."""
    problems = _Problems()
    entries = problems.obj(value, ("plans",))
    plans: dict[str, Plan] = {}
    for name, entry in (entries or {}).items():
        path = ("plans", name)
        if not _PLAN_NAME.fullmatch(name):
            problems.add(
                path, "not a valid plan name: use 1-64 characters from A-Z a-z 0-9 _ . : -"
            )
            continue
        plan = _plan(problems, name, entry, path, meters, periods)
        if plan is not None:
            plans[name] = plan
    return plans, problems.found


def parse_invoicing(value: object) -> tuple[InvoicingConfig, list[PlanProblem]]:
    """The `invoicing` object: today only `stripe`."""
    problems = _Problems()
    fields = problems.obj(value, ("invoicing",))
    if fields is None:
        return InvoicingConfig(), problems.found
    problems.keys(fields, ("invoicing",), INVOICING_KEYS)
    stripe = None
    if "stripe" in fields:
        stripe = _stripe(problems, fields["stripe"], ("invoicing", "stripe"))
    return InvoicingConfig(stripe=stripe), problems.found


def _stripe(problems: _Problems, value: object, path: Path) -> StripeConfig | None:
    fields = problems.obj(value, path)
    if fields is None:
        return None
    problems.keys(fields, path, STRIPE_KEYS)
    api_key = fields.get("apiKey")
    if api_key is not None and (not isinstance(api_key, str) or not api_key):
        problems.add(_key(path, "apiKey"), "expected a Stripe secret key string (sk_...)")
        api_key = None
    base = fields.get("apiBase", DEFAULT_STRIPE_API_BASE)
    if not isinstance(base, str) or not base.startswith(("http://", "https://")):
        problems.add(_key(path, "apiBase"), "expected an http:// or https:// URL")
        base = DEFAULT_STRIPE_API_BASE
    auto_advance = fields.get("autoAdvance")
    if auto_advance is not None and not isinstance(auto_advance, bool):
        problems.add(_key(path, "autoAdvance"), "expected true or false")
        auto_advance = None
    return StripeConfig(api_key=api_key, api_base=base.rstrip("/"), auto_advance=auto_advance)


def _plan(
    problems: _Problems,
    name: str,
    value: object,
    path: Path,
    meters: Collection[str],
    periods: Collection[str],
) -> Plan | None:
    fields = problems.obj(value, path)
    if fields is None:
        return None
    before = len(problems.found)
    problems.keys(fields, path, PLAN_KEYS)
    currency = fields.get("currency")
    if "currency" not in fields:
        problems.add(_key(path, "currency"), "missing (required)")
    elif not isinstance(currency, str) or currency.lower() not in CURRENCY_EXPONENTS:
        problems.add(
            _key(path, "currency"),
            f'{_describe(currency)} is not an ISO 4217 currency code like "usd"',
        )
    period = fields.get("period", "monthly")
    if not isinstance(period, str) or period not in periods:
        problems.add(
            _key(path, "period"),
            f"{_describe(period)} is not a configured period ({', '.join(periods)})",
        )
    base_fee = _money(problems, fields.get("baseFee", "0"), _key(path, "baseFee"))
    minimum = _money(problems, fields.get("minimum", "0"), _key(path, "minimum"))
    charges: dict[str, Charge] = {}
    charges_path = _key(path, "charges")
    for meter, entry in (problems.obj(fields.get("charges", {}), charges_path) or {}).items():
        charge_path = _key(charges_path, meter)
        if meter not in meters:
            problems.add(charge_path, f"{_describe(meter)} is not a configured meter (events)")
            continue
        charge = _charge(problems, entry, charge_path)
        if charge is not None:
            charges[meter] = charge
    allowances: dict[str, Decimal] = {}
    allowances_path = _key(path, "allowances")
    for meter, amount in (
        problems.obj(fields.get("allowances", {}), allowances_path) or {}
    ).items():
        item_path = _key(allowances_path, meter)
        if meter not in meters:
            problems.add(item_path, f"{_describe(meter)} is not a configured meter (events)")
            continue
        quantity = _money(problems, amount, item_path)
        if quantity is not None:
            allowances[meter] = quantity
    if len(problems.found) > before or base_fee is None or minimum is None:
        return None
    assert isinstance(currency, str) and isinstance(period, str)
    return Plan(
        name=name,
        currency=currency.lower(),
        period=period,
        base_fee=base_fee,
        minimum=minimum,
        charges=charges,
        allowances=allowances,
    )


def _charge(problems: _Problems, value: object, path: Path) -> Charge | None:
    fields = problems.obj(value, path)
    if fields is None:
        return None
    before = len(problems.found)
    problems.keys(fields, path, CHARGE_KEYS)
    given = fields.get("model")
    model = next((m for m in MODELS if m == given), None)
    if model is None:
        problems.add(_key(path, "model"), f"{_describe(given)} is not one of {', '.join(MODELS)}")
        return None
    prices = _prices(problems, fields, path, model, required=True)
    by_group: dict[str, dict[str, PriceOverride]] = {}
    group_path = _key(path, "byGroup")
    for dimension, values in (problems.obj(fields.get("byGroup", {}), group_path) or {}).items():
        dimension_path = _key(group_path, dimension)
        overrides: dict[str, PriceOverride] = {}
        for group_value, entry in (problems.obj(values, dimension_path) or {}).items():
            entry_path = _key(dimension_path, group_value)
            override_fields = problems.obj(entry, entry_path)
            if override_fields is None:
                continue
            problems.keys(override_fields, entry_path, CHARGE_KEYS[1:5])
            override = _prices(problems, override_fields, entry_path, model, required=False)
            overrides[group_value] = PriceOverride(
                unit_price=override.unit_price,
                tiers=override.tiers,
                package_size=override.package_size,
                package_price=override.package_price,
            )
        by_group[dimension] = overrides
    if len(problems.found) > before:
        return None
    return Charge(
        model=model,
        unit_price=prices.unit_price or Decimal(0),
        tiers=prices.tiers or (),
        package_size=prices.package_size or 1,
        package_price=prices.package_price or Decimal(0),
        by_group=by_group,
    )


def _prices(
    problems: _Problems, fields: Mapping[str, object], path: Path, model: str, *, required: bool
) -> PriceOverride:
    """The price fields the model uses (`required`: they must be there)."""

    def need(key: str) -> bool:
        if key in fields:
            return True
        if required:
            problems.add(_key(path, key), f"missing (required by model {model})")
        return False

    if model == "per_unit":
        if not need("unitPrice"):
            return PriceOverride()
        return PriceOverride(
            unit_price=_money(problems, fields["unitPrice"], _key(path, "unitPrice"))
        )
    if model == "package":
        size: int | None = None
        if need("packageSize"):
            given = fields["packageSize"]
            if isinstance(given, int) and not isinstance(given, bool) and given >= 1:
                size = given
            else:
                problems.add(_key(path, "packageSize"), "expected a whole number of at least 1")
        price = None
        if need("packagePrice"):
            price = _money(problems, fields["packagePrice"], _key(path, "packagePrice"))
        return PriceOverride(package_size=size, package_price=price)
    if not need("tiers"):
        return PriceOverride()
    return PriceOverride(tiers=_tiers(problems, fields["tiers"], _key(path, "tiers")))


def _tiers(problems: _Problems, value: object, path: Path) -> tuple[Tier, ...] | None:
    if not isinstance(value, list) or not value:
        problems.add(path, f"expected a non-empty array of tiers, got {_describe(value)}")
        return None
    tiers: list[Tier] = []
    previous: int | None = 0
    for index, entry in enumerate(value):
        tier_path = (*path, index)
        fields = problems.obj(entry, tier_path)
        if fields is None:
            return None
        problems.keys(fields, tier_path, TIER_KEYS)
        up_to = fields.get("upTo", "missing")
        last = index == len(value) - 1
        if up_to is None:
            if not last:
                problems.add(
                    _key(tier_path, "upTo"), "null (no end) is only allowed on the last tier"
                )
        elif not isinstance(up_to, int) or isinstance(up_to, bool) or up_to < 1:
            problems.add(_key(tier_path, "upTo"), "expected a whole number of at least 1, or null")
            return None
        elif previous is not None and up_to <= previous:
            problems.add(
                _key(tier_path, "upTo"),
                f"{up_to} is out of order: it must be greater than the previous tier's {previous}",
            )
        elif last:
            problems.add(
                _key(tier_path, "upTo"),
                f"the last tier ends at {up_to}, leaving a gap above it: make it null",
            )
        unit = _money(problems, fields.get("unitPrice", "0"), _key(tier_path, "unitPrice"))
        flat = _money(problems, fields.get("flatPrice", "0"), _key(tier_path, "flatPrice"))
        if "unitPrice" not in fields and "flatPrice" not in fields:
            problems.add(
                _key(tier_path, "unitPrice"), "missing (a tier needs unitPrice or flatPrice)"
            )
        if isinstance(up_to, int) and not isinstance(up_to, bool):
            previous = up_to
        if unit is not None and flat is not None:
            tiers.append(Tier(up_to if isinstance(up_to, int) else None, unit, flat))
    return tuple(tiers)


def _money(problems: _Problems, value: object, path: Path) -> Decimal | None:
    """A non-negative exact amount from a JSON string or number."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        problems.add(path, f'expected a decimal amount like "0.001", got {_describe(value)}')
        return None
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        problems.add(path, f"{_describe(value)} is not a decimal number")
        return None
    if not amount.is_finite():
        problems.add(path, f"{_describe(value)} is not a finite number")
        return None
    if amount < 0:
        problems.add(path, f"{_describe(value)} is negative: prices and amounts must be 0 or more")
        return None
    return amount


def _key(parent: Path, key: str) -> Path:
    return (*parent, key)


def _describe(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return msgspec.json.encode(value).decode()


def redacted_invoicing(invoicing: InvoicingConfig, mask: str) -> dict[str, object]:
    """The `invoicing` section for `GET /config`: the Stripe key never leaves meterd."""
    if invoicing.stripe is None:
        return {}
    stripe = invoicing.stripe
    shown: dict[str, object] = {"apiBase": stripe.api_base, "apiKey": mask}
    if stripe.auto_advance is not None:
        shown["autoAdvance"] = stripe.auto_advance
    return {"stripe": shown}


def plans_document(plans: Mapping[str, Plan]) -> dict[str, object]:
    """The plans in their config-file form (amounts as strings)."""
    return {name: _plan_document(plan) for name, plan in plans.items()}


def _plan_document(plan: Plan) -> dict[str, object]:
    def tiers(items: tuple[Tier, ...]) -> list[dict[str, object]]:
        return [
            {"upTo": t.up_to, "unitPrice": str(t.unit_price), "flatPrice": str(t.flat_price)}
            for t in items
        ]

    def charge(c: Charge) -> dict[str, object]:
        shown: dict[str, object] = {"model": c.model}
        if c.model == "per_unit":
            shown["unitPrice"] = str(c.unit_price)
        elif c.model == "package":
            shown.update(packageSize=c.package_size, packagePrice=str(c.package_price))
        else:
            shown["tiers"] = tiers(c.tiers)
        if c.by_group:
            shown["byGroup"] = {
                dim: {
                    value: {
                        k: v
                        for k, v in {
                            "unitPrice": None if o.unit_price is None else str(o.unit_price),
                            "tiers": None if o.tiers is None else tiers(o.tiers),
                            "packageSize": o.package_size,
                            "packagePrice": None
                            if o.package_price is None
                            else str(o.package_price),
                        }.items()
                        if v is not None
                    }
                    for value, o in values.items()
                }
                for dim, values in c.by_group.items()
            }
        return shown

    return {
        "currency": plan.currency,
        "period": plan.period,
        "baseFee": str(plan.base_fee),
        "minimum": str(plan.minimum),
        "charges": {meter: charge(c) for meter, c in plan.charges.items()},
        "allowances": {meter: str(a) for meter, a in plan.allowances.items()},
    }
