"""Outgoing webhook messages, shaped here (below storage) and written to the outbox by the
caller's transaction: `aggregation.completed`, `aggregation.adjusted`, `invoice.created`
and `usage.threshold_crossed`."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import msgspec

from meterd.aggregation import AggregationRow, Totals
from meterd.config.model import WebhookConfig
from meterd.invoices import InvoiceOut, InvoiceRecord, invoice_out
from meterd.limits import UsageAlert
from meterd.meters.values import GroupValue
from meterd.timeutil import format_ms


class PayloadData(msgspec.Struct, rename="camel"):
    aggregation_id: str
    period_key: str
    period_start: str
    period_end: str
    timestamp: str
    events: dict[str, int | float]
    event_counts: dict[str, int]
    event_count: int
    groups: dict[str, list[GroupValue]] | msgspec.UnsetType = msgspec.UNSET


class PreviousTotals(msgspec.Struct, rename="camel"):
    """What an adjusted record said before this revision."""

    events: dict[str, int | float]
    event_counts: dict[str, int]
    event_count: int
    groups: dict[str, list[GroupValue]] | msgspec.UnsetType = msgspec.UNSET


class AdjustedData(PayloadData, rename="camel", kw_only=True):
    revision: int
    previous: PreviousTotals


class RecordPayload(msgspec.Struct):
    """`aggregation.completed` (data: PayloadData) or `aggregation.adjusted` (AdjustedData)."""

    type: str
    customerId: str  # noqa: N815 - the wire name
    period: str
    data: PayloadData
    created: int


class Outgoing(msgspec.Struct, frozen=True):
    """One outbox row to write with a period's close."""

    message_id: str
    aggregation_id: str
    url: str
    payload: bytes


_encoder = msgspec.json.Encoder()


def _record_data(row: AggregationRow) -> PayloadData:
    return PayloadData(
        aggregation_id=row.id,
        period_key=row.period_key,
        period_start=format_ms(row.period_start),
        period_end=format_ms(row.period_end - 1),
        timestamp=format_ms(row.updated_ms),
        events=row.totals.events,
        event_counts=row.totals.event_counts,
        event_count=row.totals.event_count,
        groups=row.totals.groups or msgspec.UNSET,
    )


def _record_payload(kind: str, row: AggregationRow, data: PayloadData) -> bytes:
    payload = RecordPayload(kind, row.customer_id, row.period, data, row.updated_ms // 1000)
    return _encoder.encode(payload)


def completed_payload(row: AggregationRow) -> bytes:
    """The exact body sent for a closed record, identical on every attempt."""
    return _record_payload("aggregation.completed", row, _record_data(row))


def adjusted_payload(row: AggregationRow, previous: Totals) -> bytes:
    """The body sent for revision `row.revision` of a closed record: as completed, plus
    `revision` and the `previous` totals it replaces."""
    data = AdjustedData(
        **msgspec.structs.asdict(_record_data(row)),
        revision=row.revision,
        previous=PreviousTotals(
            events=previous.events,
            event_counts=previous.event_counts,
            event_count=previous.event_count,
            groups=previous.groups or msgspec.UNSET,
        ),
    )
    return _record_payload("aggregation.adjusted", row, data)


def outgoing_for(row: AggregationRow, webhooks: Sequence[WebhookConfig]) -> list[Outgoing]:
    """Outbox rows for a newly closed record: one per enabled webhook that wants its period."""
    return _outgoing(row.id, row.period, completed_payload(row), webhooks)


def adjusted_outgoing_for(
    row: AggregationRow, previous: Totals, webhooks: Sequence[WebhookConfig]
) -> list[Outgoing]:
    """Outbox rows for revision `row.revision` (2 or more) of a closed record."""
    payload = adjusted_payload(row, previous)
    return _outgoing(row.id, row.period, payload, webhooks, f"{row.id}\nrevision {row.revision}")


def _outgoing(
    subject: str,
    period: str,
    payload: bytes,
    webhooks: Sequence[WebhookConfig],
    message_key: str | None = None,
) -> list[Outgoing]:
    """One outbox row per enabled webhook that wants `period`. The outbox's
    `aggregation_id` column holds `subject` (a record, invoice or alert id); the message
    id derives from `message_key` (default: the subject), so it is stable across retries."""
    return [
        Outgoing(
            message_id=_message_id(message_key or subject, index, hook.url),
            aggregation_id=subject,
            url=hook.url,
            payload=payload,
        )
        for index, hook in enumerate(webhooks)
        if hook.enabled and (hook.periods is None or period in hook.periods)
    ]


def _message_id(aggregation_id: str, index: int, url: str) -> str:
    # Customer ids may hold anything; a header value must be plain ASCII.
    digest = hashlib.sha256(f"{aggregation_id}\n{index}\n{url}".encode()).hexdigest()
    return "msg_" + digest[:32]


# --- invoices ---------------------------------------------------------------------


class InvoicePayload(msgspec.Struct):
    type: str
    customerId: str  # noqa: N815 - the wire name
    period: str
    data: InvoiceOut
    created: int


def invoice_created_payload(invoice: InvoiceRecord) -> bytes:
    """`invoice.created`: the invoice record as `GET /invoices/{id}` shows it at creation."""
    return _encoder.encode(
        InvoicePayload(
            type="invoice.created",
            customerId=invoice.customer_id,
            period=invoice.period,
            data=invoice_out(invoice),
            created=invoice.created_ms // 1000,
        )
    )


def invoice_outgoing(invoice: InvoiceRecord, webhooks: Sequence[WebhookConfig]) -> list[Outgoing]:
    """Outbox rows for a new invoice: one per enabled webhook that wants its period.

    The outbox's `aggregation_id` column holds the invoice id (the message's subject).
    """
    return _outgoing(invoice.id, invoice.period, invoice_created_payload(invoice), webhooks)


# --- usage alerts -----------------------------------------------------------------


class ThresholdData(msgspec.Struct, rename="camel"):
    meter: str
    period: str
    period_start: str
    period_end: str
    threshold: int | float
    usage: int | float
    limit: int | float


class ThresholdPayload(msgspec.Struct):
    type: str
    customerId: str  # noqa: N815 - the wire name
    data: ThresholdData
    created: int


def threshold_payload(alert: UsageAlert) -> bytes:
    """`usage.threshold_crossed`: the usage that reached `threshold` percent of `limit`."""
    threshold = alert.threshold
    return _encoder.encode(
        ThresholdPayload(
            type="usage.threshold_crossed",
            customerId=alert.customer_id,
            data=ThresholdData(
                meter=alert.meter,
                period=alert.period,
                period_start=format_ms(alert.period_start_ms),
                period_end=format_ms(alert.period_end_ms - 1),
                threshold=int(threshold) if threshold.is_integer() else threshold,
                usage=alert.usage,
                limit=alert.limit,
            ),
            created=alert.created_ms // 1000,
        )
    )


def threshold_outgoing(alert: UsageAlert, webhooks: Sequence[WebhookConfig]) -> list[Outgoing]:
    """Outbox rows for a new alert: one per enabled webhook that wants its period.

    The outbox's `aggregation_id` column holds the alert id (the message's subject).
    """
    return _outgoing(alert.id, alert.period, threshold_payload(alert), webhooks)
