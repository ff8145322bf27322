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


class AdjustedPayload(msgspec.Struct):
    type: str
    customerId: str  # noqa: N815 - the wire name
    period: str
    data: AdjustedData
    created: int


class CompletedPayload(msgspec.Struct):
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


def completed_payload(row: AggregationRow) -> bytes:
    """The exact body sent for a closed record, identical on every attempt."""
    return _encoder.encode(
        CompletedPayload(
            type="aggregation.completed",
            customerId=row.customer_id,
            period=row.period,
            data=PayloadData(
                aggregation_id=row.id,
                period_key=row.period_key,
                period_start=format_ms(row.period_start),
                period_end=format_ms(row.period_end - 1),
                timestamp=format_ms(row.updated_ms),
                events=row.totals.events,
                event_counts=row.totals.event_counts,
                event_count=row.totals.event_count,
                groups=row.totals.groups or msgspec.UNSET,
            ),
            created=row.updated_ms // 1000,
        )
    )


def adjusted_payload(row: AggregationRow, previous: Totals) -> bytes:
    """The body sent for revision `row.revision` of a closed record: as completed, plus
    `revision` and the `previous` totals it replaces."""
    return _encoder.encode(
        AdjustedPayload(
            type="aggregation.adjusted",
            customerId=row.customer_id,
            period=row.period,
            data=AdjustedData(
                aggregation_id=row.id,
                period_key=row.period_key,
                period_start=format_ms(row.period_start),
                period_end=format_ms(row.period_end - 1),
                timestamp=format_ms(row.updated_ms),
                events=row.totals.events,
                event_counts=row.totals.event_counts,
                event_count=row.totals.event_count,
                groups=row.totals.groups or msgspec.UNSET,
                revision=row.revision,
                previous=PreviousTotals(
                    events=previous.events,
                    event_counts=previous.event_counts,
                    event_count=previous.event_count,
                    groups=previous.groups or msgspec.UNSET,
                ),
            ),
            created=row.updated_ms // 1000,
        )
    )


def outgoing_for(row: AggregationRow, webhooks: Sequence[WebhookConfig]) -> list[Outgoing]:
    """Outbox rows for a newly closed record: one per enabled webhook that wants its period."""
    return _outgoing(row, webhooks, completed_payload(row), row.id)


def adjusted_outgoing_for(
    row: AggregationRow, previous: Totals, webhooks: Sequence[WebhookConfig]
) -> list[Outgoing]:
    """Outbox rows for revision `row.revision` (2 or more) of a closed record."""
    return _outgoing(
        row, webhooks, adjusted_payload(row, previous), f"{row.id}\nrevision {row.revision}"
    )


def _outgoing(
    row: AggregationRow, webhooks: Sequence[WebhookConfig], payload: bytes, subject: str
) -> list[Outgoing]:
    return [
        Outgoing(
            message_id=_message_id(subject, index, hook.url),
            aggregation_id=row.id,
            url=hook.url,
            payload=payload,
        )
        for index, hook in enumerate(webhooks)
        if hook.enabled and (hook.periods is None or row.period in hook.periods)
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
    payload = invoice_created_payload(invoice)
    return [
        Outgoing(
            message_id=_message_id(invoice.id, index, hook.url),
            aggregation_id=invoice.id,
            url=hook.url,
            payload=payload,
        )
        for index, hook in enumerate(webhooks)
        if hook.enabled and (hook.periods is None or invoice.period in hook.periods)
    ]


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
    payload = threshold_payload(alert)
    return [
        Outgoing(
            message_id=_message_id(alert.id, index, hook.url),
            aggregation_id=alert.id,
            url=hook.url,
            payload=payload,
        )
        for index, hook in enumerate(webhooks)
        if hook.enabled and (hook.periods is None or alert.period in hook.periods)
    ]
