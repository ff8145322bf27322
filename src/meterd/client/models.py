"""Typed mirrors of meterd's JSON: the event sent, and every answer read back.

Field names are snake_case; on the wire they are the server's camelCase
(`customerId`, `_id`). Times are decoded to timezone-aware UTC datetimes.
Unknown fields are ignored, so a newer server does not break an older client.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, Literal, TypeVar

import msgspec

T = TypeVar("T")

Status = Literal["open", "closed"]
DeliveryStatus = Literal["pending", "delivered", "failed"]


class Event(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    """A usage event to send.

    `timestamp` is when the usage happened: an aware datetime, a naive one (taken
    as UTC) or epoch milliseconds; absent, the server uses the arrival time.
    `id` makes sending it again harmless: the server stores and counts it once.
    """

    event_type: str
    customer_id: str
    value: float
    metadata: dict[str, Any] | None = None
    timestamp: datetime | int | None = None
    id: str | None = None


class CaptureResult(msgspec.Struct, rename="camel", kw_only=True):
    """Answer to one captured event; `duplicate` is true when its id was already stored."""

    message: str
    event_type: str
    customer_id: str
    id: str
    duplicate: bool = False


class BatchResult(msgspec.Struct, kw_only=True):
    """Answer to a stored batch: `count` = `stored` (new) + `duplicates` (ids already stored)."""

    message: str
    count: int
    stored: int = 0
    duplicates: int = 0


class StoredEvent(msgspec.Struct, rename="camel", kw_only=True):
    """An event as stored; `hour` ... `year` are the keys of the periods it falls in."""

    id: str = msgspec.field(name="_id")
    customer_id: str
    event_type: str
    value: float
    metadata: dict[str, Any] | None = None
    timestamp: datetime
    received_at: datetime
    hour: str = ""
    day: str = ""
    week: str = ""
    month: str = ""
    year: str = ""
    # "voided" once a correction took the event out of every total.
    status: str = "active"


class GroupValue(msgspec.Struct, kw_only=True):
    """One group of a meter with `groupBy`: its dimensions, value and event count."""

    dimensions: dict[str, str | None]
    value: int | float
    count: int


class WebhookStatus(msgspec.Struct, rename="camel", kw_only=True):
    delivered: bool = False
    delivered_at: datetime | None = None
    attempts: int = 0


class Aggregation(msgspec.Struct, rename="camel", kw_only=True):
    """A customer's totals for one period; `period_end` is the period's last millisecond."""

    id: str = msgspec.field(name="_id")
    customer_id: str
    period: str
    period_key: str
    period_start: datetime
    period_end: datetime
    status: Status
    events: dict[str, int | float]
    event_counts: dict[str, int]
    event_count: int
    timestamp: datetime
    created_at: datetime
    updated_at: datetime
    webhook_status: WebhookStatus = msgspec.field(default_factory=WebhookStatus)
    groups: dict[str, list[GroupValue]] = msgspec.field(default_factory=dict)
    # 1 as closed; later revisions follow late events and corrections.
    revision: int = 1


class Usage(msgspec.Struct, rename="camel", kw_only=True):
    """Live values of one customer's period, as of `as_of`."""

    customer_id: str
    period: str
    period_key: str
    period_start: datetime
    period_end: datetime
    status: Status
    events: dict[str, int | float]
    event_counts: dict[str, int]
    event_count: int
    as_of: datetime
    groups: dict[str, list[GroupValue]] = msgspec.field(default_factory=dict)


class UsageRow(msgspec.Struct, rename="camel", kw_only=True):
    """One row of a usage query: a window, maybe a customer, a group, its value and count."""

    window_start: datetime
    window_end: datetime
    customer_id: str | None = None
    group_by: dict[str, str | None] = msgspec.field(default_factory=dict)
    value: int | float
    count: int


class UsageQueryResult(msgspec.Struct, rename="camel", kw_only=True):
    """The answer of GET /usage/query."""

    meter: str
    from_: datetime = msgspec.field(name="from")
    to: datetime
    window_size: str | None = None
    window_time_zone: str
    data: list[UsageRow]


class TriggerResult(msgspec.Struct, kw_only=True):
    """Records written by POST /aggregations/trigger: closed periods and open ones."""

    closed: int
    open: int
    # Closed records given a new revision by late events or corrections.
    revised: int = 0
    message: str = ""


class ApiKeyName(msgspec.Struct, kw_only=True):
    """The API key that made a correction: its name and display prefix."""

    name: str
    prefix: str


class EventDetail(StoredEvent, rename="camel", kw_only=True):
    """One event with its correction history."""

    voided_at: datetime | None = None
    void_reason: str | None = None
    voided_by: ApiKeyName | None = None
    amends: str | None = None
    amended_by: str | None = None
    amend_reason: str | None = None
    amend_key: ApiKeyName | None = None


class VoidResult(msgspec.Struct, rename="camel", kw_only=True):
    id: str
    status: str
    voided_at: datetime
    reason: str
    voided_by: ApiKeyName


class Amendment(msgspec.Struct, rename="camel", kw_only=True):
    """The replacement event of an amend; `amends` is the id it replaced."""

    id: str
    amends: str
    event_type: str
    customer_id: str
    value: float
    metadata: dict[str, Any] | None = None
    timestamp: datetime
    received_at: datetime
    status: str
    reason: str
    amended_by: ApiKeyName
    duplicate: bool = False


class Revision(msgspec.Struct, rename="camel", kw_only=True):
    """One version of a closed record's totals; revision 1 is the record as closed.

    An open record has none yet: its revisions list is empty until its period closes.
    """

    revision: int
    events: dict[str, int | float]
    event_counts: dict[str, int]
    event_count: int
    created_at: datetime
    groups: dict[str, list[GroupValue]] = msgspec.field(default_factory=dict)


class Attempt(msgspec.Struct, rename="camel", kw_only=True):
    """One attempt to deliver a webhook; `response` is the first 1 KB of the answer."""

    attempted_at: datetime
    status_code: int | None = None
    latency_ms: int = 0
    response: str | None = None
    error: str | None = None


class Delivery(msgspec.Struct, rename="camel", kw_only=True):
    """A webhook delivery; `payload` and `attempt_log` are only filled by `delivery(id)`."""

    id: int
    webhook_id: str
    aggregation_id: str
    url: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None = None
    delivered_at: datetime | None = None
    dry_run: bool = False
    last_error: str | None = None
    created_at: datetime
    updated_at: datetime
    payload: dict[str, Any] | None = None
    attempt_log: list[Attempt] | None = None


class Health(msgspec.Struct, kw_only=True):
    """Readiness: `status` is "ok", or "unavailable" with `error` when the database is down."""

    status: str
    database: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class ServiceInfo(msgspec.Struct, kw_only=True):
    name: str
    version: str
    description: str = ""
    docs: str = ""
    openapi: str = ""


class Page(msgspec.Struct, Generic[T], frozen=True):
    """One page of a listing; pass `next_cursor` as `cursor` for the next (None: last page)."""

    items: list[T]
    next_cursor: str | None = None

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


class NextPlan(msgspec.Struct, rename="camel", kw_only=True):
    plan: str | None
    effective_from: datetime


class Entitlement(msgspec.Struct, rename="camel", kw_only=True):
    """May the customer still use `meter` this period: `has_access` is usage < limit."""

    meter: str
    period: str
    period_start: datetime
    period_end: datetime
    usage: int | float
    limit: int | float | None = None
    remaining: int | float | None = None
    has_access: bool


class Entitlements(msgspec.Struct, rename="camel", kw_only=True):
    customer_id: str
    entitlements: list[Entitlement]


class Customer(msgspec.Struct, rename="camel", kw_only=True):
    """A customer: the plan billing its current period and a change waiting for the next."""

    id: str
    plan: str | None = None
    plan_effective_from: datetime | None = None
    next_plan: NextPlan | None = None
    stripe_customer: str | None = None
    limits: dict[str, Any] | None = None
    created_at: datetime
    updated_at: datetime


class InvoiceLine(msgspec.Struct, rename="camel", kw_only=True):
    """A priced line; amounts are exact decimals."""

    kind: str
    description: str
    amount: Decimal
    meter: str | None = None
    model: str | None = None
    quantity: Decimal | None = None
    unit_price: Decimal | None = None
    package_size: int | None = None
    packages: Decimal | None = None
    tiers: list[dict[str, Any]] | None = None
    dimensions: dict[str, str | None] | None = None


class InvoicePreview(msgspec.Struct, rename="camel", kw_only=True):
    customer_id: str
    plan: str
    period: str
    period_key: str
    period_start: datetime
    period_end: datetime
    currency: str
    lines: list[InvoiceLine]
    total: Decimal
    total_minor_units: int
    usage: dict[str, int | float]
    as_of: datetime


class Invoice(msgspec.Struct, rename="camel", kw_only=True):
    """An invoice record; `provider` holds the Stripe ids once sent."""

    id: str
    customer_id: str
    plan: str
    period: str
    period_key: str
    period_start: datetime
    period_end: datetime
    revision: int
    currency: str
    total: Decimal
    total_minor_units: int
    lines: list[InvoiceLine]
    status: str
    provider: dict[str, Any] | None = None
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None = None
