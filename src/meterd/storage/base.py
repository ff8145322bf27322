"""The storage interface every backend implements, and the records it returns.

Handlers and domain code talk only to `Store`; SQLite and PostgreSQL each
implement it. Every method that writes is one transaction of its own, so a
2xx answer always means "committed".
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Literal

import msgspec

from meterd.aggregation import AggregationRow, Status, Totals
from meterd.config.model import EventTypeConfig, Op, WebhookConfig
from meterd.ingest import NewEvent
from meterd.invoices import InvoiceRecord, InvoiceStatus, PeriodInvoicing
from meterd.limits import UsageAlert
from meterd.messages import Outgoing
from meterd.meters.groups import GroupFilter, GroupTotal, MeterEvent, WindowTotal
from meterd.meters.values import MeterValue
from meterd.periods import PeriodBounds, PeriodCalendar
from meterd.rollup import Partial
from meterd.storage.commitsizes import CommitSizes


class StoredEvent(msgspec.Struct, frozen=True):
    seq: int
    id: str
    event_type: str
    customer_id: str
    value: float
    metadata: bytes | None
    ts_ms: int
    received_ms: int
    # Set when a correction voided the event (it then counts in no total).
    voided_ms: int | None = None


class EventQuery(msgspec.Struct, frozen=True):
    """Filters for listing raw events, newest (by event time) first."""

    customer_id: str | None = None
    event_type: str | None = None
    from_ms: int | None = None  # inclusive
    to_ms: int | None = None  # inclusive
    limit: int = 100
    # Keyset cursor: only events strictly older than (ts_ms, seq).
    before: tuple[int, int] | None = None
    include_voided: bool = False


class AggregationQuery(msgspec.Struct, frozen=True):
    """Filters for listing aggregation records, newest period first."""

    customer_id: str | None = None
    period: str | None = None
    from_ms: int | None = None  # period start at or after
    to_ms: int | None = None  # period start at or before
    limit: int = 100
    # Keyset cursor: only records strictly before (period_start, id) in listing order.
    before: tuple[int, str] | None = None


DeliveryStatus = Literal["pending", "delivered", "failed"]


class DeliveryRecord(msgspec.Struct, frozen=True):
    """One outbox row: a closed record's payload on its way to one webhook URL."""

    id: int
    message_id: str
    aggregation_id: str
    url: str
    payload: bytes
    status: DeliveryStatus
    attempts: int
    retry_from: int
    next_attempt_ms: int | None
    dry_run: bool
    last_error: str | None
    created_ms: int
    updated_ms: int
    delivered_ms: int | None


class AttemptRecord(msgspec.Struct, frozen=True):
    attempted_ms: int
    status_code: int | None
    latency_ms: int
    response: str | None
    error: str | None


class AttemptOutcome(msgspec.Struct, frozen=True):
    """What one attempt did, and what the delivery becomes."""

    delivery_id: int
    attempt: AttemptRecord
    status: DeliveryStatus
    next_attempt_ms: int | None = None
    dry_run: bool = False


class ApiKeyRecord(msgspec.Struct, frozen=True):
    id: int
    name: str
    prefix: str
    created_ms: int
    revoked_ms: int | None


class PlanAssignment(msgspec.Struct, frozen=True):
    """`plan` (None: no plan) bills the customer's periods starting from `effective_from_ms`."""

    plan: str | None
    effective_from_ms: int


class CustomerRecord(msgspec.Struct, frozen=True):
    """A customer's billing record; `limits` is the JSON text it was given."""

    id: str
    stripe_customer: str | None
    limits: bytes | None
    created_ms: int
    updated_ms: int
    plans: tuple[PlanAssignment, ...] = ()  # oldest first


class TouchedMeter(msgspec.Struct, frozen=True):
    """Ingest added events of `meter` for a watched customer; `version` counts the touches."""

    customer_id: str
    meter: str
    version: int


class InvoiceQuery(msgspec.Struct, frozen=True):
    """Filters for listing invoices, newest period first."""

    customer_id: str | None = None
    status: InvoiceStatus | None = None
    limit: int = 100
    # Keyset cursor: only invoices strictly before (period_start, id) in listing order.
    before: tuple[int, str] | None = None


class InvoiceAttempt(msgspec.Struct, frozen=True):
    """What one attempt to send an invoice to its provider did; releases the claim."""

    invoice_id: str
    status: InvoiceStatus
    now_ms: int
    next_attempt_ms: int | None = None
    last_error: str | None = None
    provider_invoice: str | None = None


class ConsoleSessionRecord(msgspec.Struct, frozen=True):
    """A console session, known by the SHA-256 hash of its cookie value."""

    session_hash: str
    key_hash: str  # the API key it was opened with: revoking the key ends the session
    created_ms: int
    expires_ms: int


class PortalTokenRecord(msgspec.Struct, frozen=True):
    """A customer portal token, known by the SHA-256 hash of the token."""

    token_hash: str
    customer_id: str
    meters: tuple[str, ...] | None  # None: every configured meter
    created_ms: int
    expires_ms: int
    revoked_ms: int | None = None


class WriteStats(msgspec.Struct, frozen=True):
    """The ingest write path at this moment, for /metrics."""

    commit_sizes: CommitSizes
    queued_events: int


class OutboxBacklog(msgspec.Struct, frozen=True):
    pending: int
    oldest_created_ms: int | None


class KeyIdentity(msgspec.Struct, frozen=True):
    """Which API key did something: its name and display prefix, never the key."""

    name: str
    prefix: str


class Correction(msgspec.Struct, frozen=True):
    """The record of an event's void; `replaced_by` is set when an amendment did it."""

    event_id: str
    voided_ms: int
    reason: str
    key: KeyIdentity
    replaced_by: str | None = None


class EventDetail(msgspec.Struct, frozen=True):
    """One raw event with its correction history."""

    event: StoredEvent
    voided: Correction | None = None
    # The event this one replaced, when it was stored by an amendment.
    amends: Correction | None = None


class Amendment(msgspec.Struct, frozen=True):
    original_id: str
    replacement: StoredEvent
    correction: Correction
    # True when an earlier amend with the same Idempotency-Key already did it.
    duplicate: bool = False


class Revision(msgspec.Struct, frozen=True):
    """One version of a closed record's totals; revision 1 is the record as closed."""

    revision: int
    totals: Totals
    created_ms: int


class Store(abc.ABC):
    """A meterd database."""

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect, apply pending migrations and start background writers."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Finish pending writes and release connections."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise StorageUnavailable unless the database answers a query."""

    @abc.abstractmethod
    async def ingest(self, events: Sequence[NewEvent]) -> list[bool]:
        """Store events atomically, skipping ids already stored.

        Returns, per event, True if it was stored and False if it was a
        duplicate (of a stored event or of an earlier event in `events`).
        """

    @property
    @abc.abstractmethod
    def ingest_transactions(self) -> int:
        """Ingest transactions committed so far; group commit keeps it below the requests."""

    @abc.abstractmethod
    async def list_events(self, query: EventQuery) -> list[StoredEvent]:
        """Raw events matching `query`, newest first, then latest arrival first."""

    # -- rollups and aggregation records -------------------------------------

    @abc.abstractmethod
    async def customer_partials(self, customer_id: str, bounds: PeriodBounds) -> dict[str, Partial]:
        """One customer's partial aggregate per event type over `bounds`, from the rollups."""

    @abc.abstractmethod
    async def first_data_ms(self, from_ms: int | None) -> int | None:
        """Start of the earliest rollup bucket at or after `from_ms` (any, if None)."""

    async def compact_rollups(self, before_ms: int) -> int:
        """Fold whole days before `before_ms` into coarser partials, if the backend keeps any.

        Only a speed-up for reading long periods; returns the days folded.
        """
        return 0

    @abc.abstractmethod
    async def watermark(self, period: str) -> int | None:
        """Every `period` period ending at or before this instant is closed."""

    @abc.abstractmethod
    async def write_period(
        self,
        *,
        period: str,
        bounds: PeriodBounds,
        ops: dict[str, Op],
        status: Status,
        now_ms: int,
        webhooks: Sequence[WebhookConfig] = (),
        invoicing: PeriodInvoicing | None = None,
        meters: Mapping[str, EventTypeConfig] | None = None,
    ) -> int:
        """Write the aggregation records of one period for every customer with events in it.

        With `invoicing`, closing also writes an invoice record (and its `invoice.created`
        outbox rows) for each customer whose plan in force at the period start bills
        this period, in the same transaction.

        `meters` are the meters whose values come from raw events (grouped, or an op
        partials cannot fold); a time-weighted level held into the period gives a
        customer a record even without events in it.

        status "closed" closes the period: records become final (a closed record is
        never written again), each newly closed record gets an outbox row per enabled
        webhook that wants this period, and the watermark moves past it, all in one
        transaction.
        status "open" refreshes the records of a period not closed yet.
        Returns the number of records written.
        """

    @abc.abstractmethod
    async def list_aggregations(self, query: AggregationQuery) -> list[AggregationRow]:
        """Aggregation records, newest period first."""

    @abc.abstractmethod
    async def get_aggregation(self, aggregation_id: str) -> AggregationRow | None:
        """One aggregation record by id."""

    @abc.abstractmethod
    async def rebuild_rollups(self) -> int:
        """Recompute every rollup from the raw events; returns the events folded."""

    # -- webhook deliveries ----------------------------------------------------

    @abc.abstractmethod
    async def claim_deliveries(
        self, *, now_ms: int, limit: int, lease_ms: int
    ) -> list[DeliveryRecord]:
        """Pending deliveries due by `now_ms`, claimed for `lease_ms` so no one else sends them."""

    @abc.abstractmethod
    async def release_claims(self) -> None:
        """Forget every claim (only safe when no other process delivers)."""

    @abc.abstractmethod
    async def record_attempt(self, outcome: AttemptOutcome) -> None:
        """Record one attempt and the delivery's new state; releases the claim."""

    @abc.abstractmethod
    async def list_deliveries(
        self, *, status: DeliveryStatus | None, limit: int, before_id: int | None
    ) -> list[DeliveryRecord]:
        """Deliveries, newest first."""

    @abc.abstractmethod
    async def get_delivery(
        self, delivery_id: int
    ) -> tuple[DeliveryRecord, list[AttemptRecord]] | None:
        """One delivery with its attempts, oldest attempt first."""

    @abc.abstractmethod
    async def redeliver(self, delivery_id: int, *, now_ms: int) -> DeliveryRecord | None:
        """Make a delivery pending again, due now, with a fresh retry schedule."""

    # -- API keys --------------------------------------------------------------

    @abc.abstractmethod
    async def add_api_key(self, *, name: str, key_hash: str, prefix: str) -> ApiKeyRecord:
        """Record a new API key by its hash."""

    @abc.abstractmethod
    async def list_api_keys(self) -> list[ApiKeyRecord]:
        """All API keys, revoked ones included."""

    @abc.abstractmethod
    async def revoke_api_key(self, key_id: int) -> bool:
        """Revoke a key; False if no active key has that id."""

    @abc.abstractmethod
    async def active_api_key_hashes(self) -> set[str]:
        """Hashes of every key that is not revoked."""

    # --- plans and invoices ---------------------------------------------------

    @abc.abstractmethod
    async def put_customer(
        self, customer: CustomerRecord, *, assignment: PlanAssignment | None
    ) -> CustomerRecord:
        """Create or replace a customer's record (its created time is kept).

        `assignment` replaces every plan assignment from its effective time on.
        """

    @abc.abstractmethod
    async def get_customer(self, customer_id: str) -> CustomerRecord | None:
        """One customer with its plan assignments."""

    @abc.abstractmethod
    async def list_customers(self, *, limit: int, after_id: str | None) -> list[CustomerRecord]:
        """Customers in id order, after `after_id`."""

    @abc.abstractmethod
    async def list_invoices(self, query: InvoiceQuery) -> list[InvoiceRecord]:
        """Invoices, newest period first."""

    @abc.abstractmethod
    async def get_invoice(self, invoice_id: str) -> InvoiceRecord | None:
        """One invoice by id."""

    @abc.abstractmethod
    async def claim_invoices(
        self, *, now_ms: int, limit: int, lease_ms: int
    ) -> list[InvoiceRecord]:
        """Draft invoices due for their provider, claimed for `lease_ms` so no other sends them."""

    @abc.abstractmethod
    async def save_invoice_progress(
        self, invoice_id: str, *, provider_customer: str | None, provider_items: dict[str, str]
    ) -> None:
        """Remember what the provider already holds (resolved customer, items created)."""

    @abc.abstractmethod
    async def finish_invoice_attempt(self, attempt: InvoiceAttempt) -> None:
        """Record an attempt's outcome, count it and release the claim."""

    @abc.abstractmethod
    async def resend_invoice(
        self, invoice_id: str, *, provider: str, now_ms: int
    ) -> InvoiceRecord | None:
        """Make a draft or failed invoice due now for `provider`, its attempts counted from 0.

        A sent invoice is left as it is (and returned); a claim in flight is kept.
        """

    # --- console and portal ---------------------------------------------------

    @abc.abstractmethod
    async def add_console_session(self, session: ConsoleSessionRecord, *, now_ms: int) -> None:
        """Record a new session; sessions expired by `now_ms` are deleted on the way."""

    @abc.abstractmethod
    async def get_console_session(self, session_hash: str) -> ConsoleSessionRecord | None:
        """The session with this hash, expired or not."""

    @abc.abstractmethod
    async def delete_console_session(self, session_hash: str) -> None:
        """End a session (sign out)."""

    @abc.abstractmethod
    async def add_portal_token(self, token: PortalTokenRecord) -> None:
        """Record a new portal token by its hash."""

    @abc.abstractmethod
    async def get_portal_token(self, token_hash: str) -> PortalTokenRecord | None:
        """The portal token with this hash, expired or revoked ones included."""

    @abc.abstractmethod
    async def revoke_portal_tokens(
        self, *, now_ms: int, token_hash: str | None = None, customer_id: str | None = None
    ) -> int:
        """Revoke one token (by hash) or every token of a customer; returns how many."""

    @abc.abstractmethod
    async def list_customer_ids(self, *, search: str | None, after: str, limit: int) -> list[str]:
        """Ids of customers with events, in id order after `after`, containing `search`."""

    @abc.abstractmethod
    async def event_counts(self, *, from_ms: int, to_ms: int) -> list[tuple[int, int]]:
        """Events per 15-minute bucket in [from_ms, to_ms): (bucket start ms, count)."""

    @abc.abstractmethod
    async def count_deliveries(self, status: DeliveryStatus) -> int:
        """How many deliveries are in `status`."""

    # --- operations: metrics and backup ---

    @abc.abstractmethod
    def write_stats(self) -> WriteStats:
        """Group-commit sizes so far and the events waiting for a commit now."""

    @abc.abstractmethod
    async def outbox_backlog(self) -> OutboxBacklog:
        """Pending webhook deliveries and when the oldest of them was created."""

    # --- webhook outbox: attempts recorded together ---

    @abc.abstractmethod
    async def record_attempts(self, outcomes: Sequence[AttemptOutcome]) -> None:
        """`record_attempt` for each outcome, in one transaction."""

    # --- meters ---

    @abc.abstractmethod
    async def meter_events(
        self,
        *,
        event_type: str,
        from_ms: int,
        to_ms: int,
        customer_ids: Sequence[str] | None = None,
    ) -> list[MeterEvent]:
        """Raw events of one type in [from_ms, to_ms), of `customer_ids` (all if None)."""

    @abc.abstractmethod
    async def levels_before(
        self,
        *,
        event_type: str,
        before_ms: int,
        group_by: Sequence[str],
        customer_ids: Sequence[str] | None = None,
    ) -> list[MeterEvent]:
        """At least the last event before `before_ms` of each customer and group.

        What a time-weighted meter's level is at `before_ms`.
        """

    @abc.abstractmethod
    async def bucket_partials(
        self,
        *,
        event_type: str,
        from_ms: int,
        to_ms: int,
        customer_ids: Sequence[str] | None = None,
    ) -> list[tuple[str, int, Partial]]:
        """(customer_id, bucket, partial) of one type's rollups in [from_ms, to_ms).

        `from_ms` and `to_ms` must fall on 15-minute buckets.
        """

    @abc.abstractmethod
    async def prepare_meters(self, event_types: Sequence[str]) -> list[str]:
        """Build what reading these meters' raw events fast needs, drop what none needs.

        Safe while serving: reads stay exact before, during and after. Returns what
        was built.
        """

    @abc.abstractmethod
    async def prepare_group_rollups(self, meters: Mapping[str, EventTypeConfig]) -> int:
        """Keep group rollups for exactly the meters among these that need them
        (meterd.meters.group_rollup.rollup_kind): grouped ones of a foldable op, and
        every time_weighted_avg, percentile and unique_count one.

        A new meter, or one whose groupBy, op or property changed, is built from its
        raw events in chunks while ingest goes on; until it is done reads fold raw
        events. Returns the events folded.
        """

    async def rollup_values(
        self,
        *,
        event_type: str,
        meter: EventTypeConfig,
        from_ms: int,
        to_ms: int,
        customer_ids: Sequence[str] | None = None,
    ) -> dict[str, MeterValue] | None:
        """A time_weighted_avg, percentile or unique_count meter per customer over
        [from_ms, to_ms), from its group rollups: every customer with events in the
        span (or a level held into it).

        None when the store cannot answer from them (the caller reads raw events).
        """
        return None

    @abc.abstractmethod
    async def meter_aggregate(
        self,
        *,
        event_type: str,
        meter: EventTypeConfig,
        customer_id: str,
        from_ms: int,
        to_ms: int,
    ) -> MeterValue | None:
        """One customer's value of a meter over [from_ms, to_ms), computed in the database.

        None when the database cannot give it exactly: the caller then computes it
        from `meter_events` (and `levels_before`).
        """

    @abc.abstractmethod
    async def window_totals(
        self,
        *,
        event_type: str,
        windows: Sequence[tuple[int, int]],
        by_customer: bool,
        customer_ids: Sequence[str] | None = None,
    ) -> list[WindowTotal] | None:
        """One type's rollups folded per window [start_ms, end_ms) (on 15-minute bounds).

        With `by_customer`, per window and customer. None when the database cannot
        fold them exactly (the caller then folds `bucket_partials`).
        """

    @abc.abstractmethod
    async def group_totals(
        self,
        *,
        event_type: str,
        windows: Sequence[tuple[int, int]],
        group_by: Sequence[str],
        by_customer: bool,
        customer_ids: Sequence[str] | None = None,
        filters: Mapping[str, GroupFilter] | None = None,
    ) -> list[GroupTotal] | None:
        """A meter's events folded per window, [customer] and group, in the database:
        from the meter's group rollups once built (`prepare_group_rollups`) and the
        windows lie on 15-minute boundaries, else from raw events.

        `windows` are contiguous [start_ms, end_ms) of any length (minutes too); `filters`
        keep events whose group text of each key the key's GroupFilter keeps (a negated
        one keeps the null group). For sum, count, avg, min and max.
        None when the database cannot fold them exactly now (the caller then folds
        `meter_events`).
        """

    # --- corrections ---

    @abc.abstractmethod
    async def get_event(self, event_id: str) -> EventDetail | None:
        """One raw event with its correction history, voided or not."""

    @abc.abstractmethod
    async def void_event(
        self, *, event_id: str, reason: str, key: KeyIdentity, now_ms: int
    ) -> Correction:
        """Void an event in one transaction: record the correction, take it out of the
        rollups, and note a change to any closed period it fell in.

        Voiding a voided event returns the first void. Raises NotFound for an unknown
        id, Conflict when an amendment already replaced the event.
        """

    @abc.abstractmethod
    async def amend_event(
        self,
        *,
        event_id: str,
        replacement: NewEvent,
        reason: str,
        key: KeyIdentity,
        idempotency_key: str | None,
        now_ms: int,
    ) -> Amendment:
        """Void `event_id` and store `replacement` in its place, in one transaction.

        A retry with the same `idempotency_key` returns the first amendment
        (duplicate=True). Raises NotFound, or Conflict when the event is already voided
        or the key was used for another event.
        """

    @abc.abstractmethod
    async def settle_late_changes(
        self,
        *,
        calendars: Mapping[str, PeriodCalendar],
        ops: Mapping[str, Op],
        webhooks: Sequence[WebhookConfig],
        now_ms: int,
        invoicing: PeriodInvoicing | None = None,
        meters: Mapping[str, EventTypeConfig] | None = None,
    ) -> int:
        """Recompute the records that late events and corrections touched.

        A closed record whose totals changed gets revision n+1 and an
        `aggregation.adjusted` outbox row per webhook, in the same transaction; a
        closed period's first record gets `aggregation.completed`. With `invoicing`, a
        revision of an invoiced period also writes its adjustment invoice, and a closed
        period's first record its invoice, in that transaction. Open records are
        refreshed. Returns the revisions and records written.
        """

    @abc.abstractmethod
    async def list_revisions(self, aggregation_id: str) -> list[Revision]:
        """Every revision of a record, oldest first; empty for an unknown record."""

    @abc.abstractmethod
    async def api_key_by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        """The stored key with this hash, revoked or not."""

    # --- entitlements and usage alerts ----------------------------------------

    @abc.abstractmethod
    async def set_watched(self, customer_id: str, *, watched: bool, meters: Sequence[str]) -> None:
        """Whether ingest records touches for `customer_id` (a customer with limits).

        `meters` are marked touched now, so usage already past a threshold is checked.
        """

    @abc.abstractmethod
    async def sync_watched(self, *, plans_with_allowances: Sequence[str]) -> int:
        """Watch exactly the customers with `limits` or assigned one of these plans.

        Returns how many customers are watched.
        """

    @abc.abstractmethod
    async def touched_meters(
        self, *, after: tuple[str, str] | None, limit: int
    ) -> list[TouchedMeter]:
        """Up to `limit` (customer, meter) pairs touched by ingest since they were checked,
        in that order, after the pair `after`."""

    @abc.abstractmethod
    async def record_alerts(
        self,
        alerts: Sequence[tuple[UsageAlert, Sequence[Outgoing]]],
        *,
        checked: Sequence[TouchedMeter],
    ) -> int:
        """One transaction: each alert not recorded before with its outbox rows, and the
        `checked` touches forgotten unless ingest touched them again. Returns new alerts."""

    @abc.abstractmethod
    async def list_alerts(self, *, customer_id: str | None, limit: int) -> list[UsageAlert]:
        """Recorded alerts, newest first."""
