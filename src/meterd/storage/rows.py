"""Rows to records, and the listing queries both backends share."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Any

import msgspec

from meterd.aggregation import AggregationRow, Totals
from meterd.invoices import InvoiceRecord, decode_lines, encode_lines
from meterd.limits import UsageAlert
from meterd.rollup import Partial
from meterd.storage.base import (
    AttemptOutcome,
    CustomerRecord,
    DeliveryRecord,
    PlanAssignment,
    StoredEvent,
)

_totals_encoder = msgspec.json.Encoder(decimal_format="number")


def event_from_row(row: Sequence[Any], number: Callable[[Any], float] | None = None) -> StoredEvent:
    """An event from (seq, id, event_type, customer_id, value, metadata text, ts ms,
    received ms[, voided ms]); `number` turns a stored value that is not a JSON number
    (PostgreSQL's Decimal) into one."""
    seq, id_, event_type, customer_id, value, metadata, ts, received, *voided = row
    return StoredEvent(
        seq=seq,
        id=id_,
        event_type=event_type,
        customer_id=customer_id,
        value=value if number is None else number(value),
        metadata=None if metadata is None else metadata.encode(),
        ts_ms=ts,
        received_ms=received,
        voided_ms=voided[0] if voided else None,
    )


_totals_decoder = msgspec.json.Decoder(Totals)


def select_aggregations(totals: str = "totals") -> str:
    """Aggregation records with their delivery summary, the columns `aggregation_from_row` reads.

    `totals` is the column expression that yields the totals as JSON text. The last
    three columns are the latest revision (2 or more) of a corrected closed record.
    """
    latest = "FROM aggregation_revisions r WHERE r.aggregation_id = aggregations.id"
    revised = totals.replace("totals", "r.totals")
    return f"""
SELECT id, customer_id, period, period_key, period_start, period_end, status, {totals},
       created_at, updated_at,
       (SELECT count(*) FROM deliveries d WHERE d.aggregation_id = aggregations.id),
       (SELECT count(*) FROM deliveries d
        WHERE d.aggregation_id = aggregations.id AND d.status = 'delivered' AND NOT d.dry_run),
       (SELECT max(delivered_at) FROM deliveries d
        WHERE d.aggregation_id = aggregations.id AND NOT d.dry_run),
       (SELECT coalesce(sum(attempts), 0) FROM deliveries d
        WHERE d.aggregation_id = aggregations.id),
       (SELECT max(revision) {latest}),
       (SELECT {revised} {latest} ORDER BY r.revision DESC LIMIT 1),
       (SELECT max(created_at) {latest})
FROM aggregations"""


SELECT_DELIVERIES = (
    "SELECT id, message_id, aggregation_id, url, payload, status, attempts, retry_from,"
    " next_attempt_at, dry_run, last_error, created_at, updated_at, delivered_at FROM deliveries"
)


def encode_totals(totals: Totals) -> str:
    """Totals as JSON text. A float that holds a whole number is written with its ".0"
    (1.801439851053056e16 as 18014398510530560.0), so a database that parses the JSON,
    as PostgreSQL's jsonb does, still gives back a float and not an integer."""
    return _totals_encoder.encode(_floats_kept(msgspec.to_builtins(totals))).decode()


def _floats_kept(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(f"{int(value)}.0") if value.is_integer() else value
    if isinstance(value, dict):
        return {key: _floats_kept(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_floats_kept(item) for item in value]
    return value


def decode_totals(text: str) -> Totals:
    return _totals_decoder.decode(text)


def aggregation_values(row: AggregationRow) -> tuple[Any, ...]:
    """The columns of an aggregations insert, in schema order."""
    return (
        row.id,
        row.customer_id,
        row.period,
        row.period_key,
        row.period_start,
        row.period_end,
        row.status,
        encode_totals(row.totals),
        row.created_ms,
        row.updated_ms,
    )


def attempt_values(outcome: AttemptOutcome) -> tuple[Any, ...]:
    """Parameters of the `insert_attempt` query."""
    attempt = outcome.attempt
    return (
        outcome.delivery_id,
        attempt.attempted_ms,
        attempt.status_code,
        attempt.latency_ms,
        attempt.response,
        attempt.error,
    )


def delivery_update_values(outcome: AttemptOutcome) -> tuple[Any, ...]:
    """Parameters of the `update_delivery_after_attempt` query."""
    attempted = outcome.attempt.attempted_ms
    return (
        outcome.status,
        outcome.next_attempt_ms,
        outcome.dry_run,
        outcome.attempt.error,
        attempted,
        outcome.status,
        attempted,
        outcome.delivery_id,
    )


def aggregation_from_row(row: tuple[Any, ...]) -> AggregationRow:
    id_, customer_id, period, key, start, end, status, totals, created, updated = row[:10]
    deliveries, delivered, delivered_ms, attempts = row[10:14]
    revision, revised_totals, revised_ms = row[14:17]
    if revision is not None:
        totals, updated = revised_totals, revised_ms
    return AggregationRow(
        id=id_,
        customer_id=customer_id,
        period=period,
        period_key=key,
        period_start=start,
        period_end=end,
        status=status,
        totals=_totals_decoder.decode(totals),
        created_ms=created,
        updated_ms=updated,
        deliveries=deliveries,
        delivered=delivered,
        delivered_ms=delivered_ms,
        attempts=int(attempts),
        revision=1 if revision is None else int(revision),
    )


def delivery_from_row(row: tuple[Any, ...]) -> DeliveryRecord:
    fields = list(row)
    fields[4] = bytes(fields[4])  # payload: PostgreSQL gives a memoryview
    fields[9] = bool(fields[9])  # dry_run: SQLite gives 0 or 1
    return DeliveryRecord(*fields)


def merge_by_type(rows: Iterable[tuple[str, str, Partial]]) -> dict[str, Partial]:
    """One partial per event type from (customer_id, event_type, partial) rows."""
    merged: dict[str, Partial] = {}
    for _, event_type, partial in rows:
        known = merged.get(event_type)
        merged[event_type] = partial if known is None else known.merge(partial)
    return merged


# --- plans and invoices -------------------------------------------------------------

SELECT_INVOICES = (
    "SELECT id, customer_id, plan, period, period_key, period_start, period_end, revision,"
    " currency, total, lines, status, created_at, updated_at, provider, provider_customer,"
    " provider_invoice, provider_items, attempts, next_attempt_at, last_error, sent_at"
    " FROM invoices"
)
# A customer period's invoices, first revision first (parameters: customer, period, start).
PERIOD_INVOICES = " WHERE customer_id = ? AND period = ? AND period_start = ? ORDER BY revision"
_items_decoder = msgspec.json.Decoder(dict[str, str])


def invoice_values(invoice: InvoiceRecord) -> tuple[Any, ...]:
    """The columns of SELECT_INVOICES, for an insert."""
    return (
        invoice.id,
        invoice.customer_id,
        invoice.plan,
        invoice.period,
        invoice.period_key,
        invoice.period_start,
        invoice.period_end,
        invoice.revision,
        invoice.currency,
        str(invoice.total),
        encode_lines(invoice.lines),
        invoice.status,
        invoice.created_ms,
        invoice.updated_ms,
        invoice.provider,
        invoice.provider_customer,
        invoice.provider_invoice,
        msgspec.json.encode(invoice.provider_items).decode(),
        invoice.attempts,
        invoice.next_attempt_ms,
        invoice.last_error,
        invoice.sent_ms,
    )


def invoice_from_row(row: Sequence[Any]) -> InvoiceRecord:
    return InvoiceRecord(
        id=row[0],
        customer_id=row[1],
        plan=row[2],
        period=row[3],
        period_key=row[4],
        period_start=int(row[5]),
        period_end=int(row[6]),
        revision=int(row[7]),
        currency=row[8],
        total=Decimal(row[9]),
        lines=decode_lines(row[10]),
        status=row[11],
        created_ms=int(row[12]),
        updated_ms=int(row[13]),
        provider=row[14],
        provider_customer=row[15],
        provider_invoice=row[16],
        provider_items=_items_decoder.decode(row[17]),
        attempts=int(row[18]),
        next_attempt_ms=None if row[19] is None else int(row[19]),
        last_error=row[20],
        sent_ms=None if row[21] is None else int(row[21]),
    )


def customer_from_rows(row: Sequence[Any], plans: Iterable[Sequence[Any]]) -> CustomerRecord:
    """(id, stripe_customer, limits, created_at, updated_at) and (plan, effective_from) rows."""
    return CustomerRecord(
        id=row[0],
        stripe_customer=row[1],
        limits=None if row[2] is None else row[2].encode(),
        created_ms=int(row[3]),
        updated_ms=int(row[4]),
        plans=tuple(PlanAssignment(plan, int(start)) for plan, start in plans),
    )


def latest_plans(rows: Iterable[Sequence[Any]], wanted: set[str]) -> dict[str, str]:
    """From (customer_id, plan) rows of the plan in force, those whose plan is in `wanted`."""
    return {customer: plan for customer, plan in rows if plan in wanted}


# --- usage alerts ---------------------------------------------------------------


def alert_from_row(row: Sequence[Any]) -> UsageAlert:
    return UsageAlert(
        customer_id=row[0],
        meter=row[1],
        period=row[2],
        period_start_ms=int(row[3]),
        period_end_ms=int(row[4]),
        threshold=float(row[5]),
        usage=_number(row[6]),
        limit=_number(row[7]),
        created_ms=int(row[8]),
    )


def alert_values(alert: UsageAlert) -> tuple[object, ...]:
    return (
        alert.id,
        alert.customer_id,
        alert.meter,
        alert.period,
        alert.period_start_ms,
        alert.period_end_ms,
        alert.threshold,
        msgspec.json.encode(alert.usage).decode(),
        msgspec.json.encode(alert.limit).decode(),
        alert.created_ms,
    )


def _number(text: str) -> int | float:
    value = msgspec.json.decode(text)
    assert isinstance(value, int | float)
    return value
