"""The adjustment invoice after a revision: the difference to what was already invoiced."""

from __future__ import annotations

from decimal import Decimal

from meterd.aggregation import Totals
from meterd.config.model import PeriodConfig
from meterd.config.plans import parse_plans
from meterd.invoices import PeriodInvoicing, adjustment_invoice
from meterd.periods import PeriodCalendar

PLANS, _ = parse_plans(
    {
        "p": {
            "currency": "usd",
            "minimum": "2.00",
            "charges": {"api.calls": {"model": "per_unit", "unitPrice": "0.05"}},
        }
    },
    meters=["api.calls"],
    periods=["monthly"],
)
BOUNDS = PeriodCalendar(PeriodConfig("monthly"), "UTC").bounds_at(1_764_000_000_000)


def totals(calls: int) -> Totals:
    return Totals({"api.calls": calls}, {"api.calls": 1}, 1)


def test_a_revision_invoices_the_difference_once() -> None:
    [first] = PeriodInvoicing(plans=PLANS).drafts(
        period="monthly",
        bounds=BOUNDS,
        totals={"acme": totals(100)},
        plan_of={"acme": "p"},
        now_ms=1,
    )
    assert first.total == Decimal("5.00")
    adjusted = adjustment_invoice(
        [first], plan=PLANS["p"], bounds=BOUNDS, totals=totals(120), provider="stripe", now_ms=2
    )
    assert adjusted is not None
    assert (adjusted.revision, adjusted.total) == (2, Decimal("1.00"))
    assert adjusted.id != first.id
    assert [line.amount for line in adjusted.lines] == [Decimal("6.00"), Decimal("-5.00")]
    assert adjusted.next_attempt_ms == 2  # due for Stripe at once
    # Fewer calls: a credit; the minimum still holds for the period as a whole.
    credit = adjustment_invoice(
        [first, adjusted],
        plan=PLANS["p"],
        bounds=BOUNDS,
        totals=totals(10),
        provider=None,
        now_ms=3,
    )
    assert credit is not None
    assert (credit.revision, credit.total) == (3, Decimal("-4.00"))
    # Nothing changed: no invoice.
    assert (
        adjustment_invoice(
            [first], plan=PLANS["p"], bounds=BOUNDS, totals=totals(100), provider=None, now_ms=4
        )
        is None
    )
