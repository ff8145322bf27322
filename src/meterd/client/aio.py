"""`AsyncMeterdClient`: the asyncio client, with a background task that batches `track()`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import httpx
import msgspec

from meterd.client import calls
from meterd.client.background import TaskBatcher, log
from meterd.client.batching import FailedBatch
from meterd.client.cache import TTLCache
from meterd.client.calls import Call, Moment
from meterd.client.errors import (
    ClientClosed,
    ConnectionFailed,
    UnexpectedResponse,
    error_for_response,
)
from meterd.client.models import (
    Aggregation,
    Amendment,
    BatchResult,
    CaptureResult,
    Customer,
    Delivery,
    DeliveryStatus,
    Entitlement,
    Event,
    EventDetail,
    Health,
    Invoice,
    InvoicePreview,
    Page,
    Revision,
    ServiceInfo,
    StoredEvent,
    TriggerResult,
    Usage,
    UsageQueryResult,
    VoidResult,
)
from meterd.client.retry import RetryPolicy

T = TypeVar("T")


class AsyncMeterdClient:
    """The asyncio twin of `MeterdClient`: same options, same methods, awaited.

    `await track()` queues events for a background task (started in the running
    loop by the first event) that posts them in batches. Use one event loop per
    client, and `async with` or `await close()`: there is no exit hook for
    asyncio, so events still queued when the loop ends are lost.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        batch_size: int = 500,
        flush_interval: float = 1.0,
        max_queue: int = 100_000,
        queue_timeout: float | None = 1.0,
        retries: int | RetryPolicy = 5,
        timeout: float | httpx.Timeout = 10.0,
        on_error: Callable[[FailedBatch], None] | None = None,
        entitlement_cache_ttl: float = 0.0,
    ) -> None:
        self._retry = RetryPolicy.of(retries)
        # Entitlement answers kept this many seconds (0: always ask the server).
        self._entitlements: TTLCache[Entitlement] = TTLCache(entitlement_cache_ttl)
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=calls.auth_headers(api_key), timeout=timeout
        )
        self._batcher = TaskBatcher(
            self._post_batch,
            batch_size=batch_size,
            flush_interval=flush_interval,
            max_queue=max_queue,
            queue_timeout=queue_timeout,
            on_failed=self._keep_failed,
        )
        self._on_error = on_error
        # Batches the background task could not send (when there is no on_error).
        self.failed: list[FailedBatch] = []

    # -- background batching ------------------------------------------------------------

    async def track(
        self,
        event_type: str,
        customer_id: str,
        value: float,
        *,
        metadata: Mapping[str, Any] | None = None,
        timestamp: datetime | int | None = None,
        id: str | None = None,
    ) -> str:
        """Queue an event for the background sender; returns its id.

        As `MeterdClient.track`: a new id and the current time unless given;
        waits up to `queue_timeout` seconds for room, then raises QueueFull.
        """
        event = calls.make_event(
            event_type,
            customer_id,
            value,
            metadata=metadata,
            timestamp=calls.now_ms() if timestamp is None else timestamp,
            id=id,
        )
        await self._batcher.add([calls.encode_event(event)])
        assert event.id is not None
        return event.id

    async def flush(self, timeout: float | None = None) -> None:
        """Send every event queued so far and wait until each is stored or failed."""
        await self._batcher.flush(timeout)

    async def close(self, timeout: float | None = None) -> None:
        """Send what is queued, stop the background task, close the connections."""
        await self._batcher.close(timeout)
        await self._http.aclose()

    @property
    def pending(self) -> int:
        """Events queued or being sent."""
        return self._batcher.pending

    async def requeue_failed(self, *, only_retryable: bool = True) -> int:
        """Queue the events of `failed` batches again, with their ids; returns how many."""
        again = [batch for batch in self.failed if batch.retryable or not only_retryable]
        encoded = [raw for batch in again for raw in batch.encoded]
        if encoded:
            await self._batcher.add(encoded, wait=False)  # ClientClosed: nothing is removed
        requeued = {id(batch) for batch in again}
        self.failed[:] = [batch for batch in self.failed if id(batch) not in requeued]
        return len(encoded)

    def _keep_failed(self, batch: FailedBatch) -> None:
        if self._on_error is not None:
            try:
                self._on_error(batch)
                return
            except Exception:
                log.exception("on_error raised; the batch is kept in .failed")
        self.failed.append(batch)

    async def _post_batch(self, encoded: list[bytes]) -> None:
        await self._call(calls.capture_encoded(encoded))

    # -- direct calls -----------------------------------------------------------------

    async def capture(
        self,
        event_type: str,
        customer_id: str,
        value: float,
        *,
        metadata: Mapping[str, Any] | None = None,
        timestamp: datetime | int | None = None,
        id: str | None = None,
    ) -> CaptureResult:
        """Store one event now; without `id` it gets one first, so a retry counts once."""
        event = calls.make_event(
            event_type, customer_id, value, metadata=metadata, timestamp=timestamp, id=id
        )
        return await self._call(calls.capture(event))

    async def capture_batch(self, events: Iterable[Event]) -> BatchResult:
        """Store a batch now, all or nothing; events without id get one."""
        batch = [calls.with_id(event) for event in events]
        if not batch:
            raise ValueError("capture_batch: no events")
        return await self._call(calls.capture_batch(batch))

    async def events(
        self,
        *,
        customer_id: str | None = None,
        event_type: str | None = None,
        from_: Moment | None = None,
        to: Moment | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        include_voided: bool = False,
    ) -> Page[StoredEvent]:
        """One page of stored events, newest first; `from_`/`to` are inclusive.

        Voided events are left out unless `include_voided` (their `status` says so).
        """
        return await self._call(
            calls.list_events(
                customer_id=customer_id,
                event_type=event_type,
                from_=from_,
                to=to,
                limit=limit,
                cursor=cursor,
                include_voided=include_voided,
            )
        )

    def iter_events(
        self,
        *,
        customer_id: str | None = None,
        event_type: str | None = None,
        from_: Moment | None = None,
        to: Moment | None = None,
        page_size: int = 1000,
    ) -> AsyncIterator[StoredEvent]:
        """Every matching event, newest first, fetched page by page (`async for`)."""
        return self._iterate(
            lambda cursor: calls.list_events(
                customer_id=customer_id,
                event_type=event_type,
                from_=from_,
                to=to,
                limit=page_size,
                cursor=cursor,
            )
        )

    async def aggregations(
        self,
        *,
        customer_id: str | None = None,
        period: str | None = None,
        from_: Moment | None = None,
        to: Moment | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[Aggregation]:
        """One page of aggregation records, newest period first."""
        return await self._call(
            calls.list_aggregations(
                customer_id=customer_id,
                period=period,
                from_=from_,
                to=to,
                limit=limit,
                cursor=cursor,
            )
        )

    def iter_aggregations(
        self,
        *,
        customer_id: str | None = None,
        period: str | None = None,
        from_: Moment | None = None,
        to: Moment | None = None,
        page_size: int = 1000,
    ) -> AsyncIterator[Aggregation]:
        """Every matching aggregation record, fetched page by page (`async for`)."""
        return self._iterate(
            lambda cursor: calls.list_aggregations(
                customer_id=customer_id,
                period=period,
                from_=from_,
                to=to,
                limit=page_size,
                cursor=cursor,
            )
        )

    async def aggregation_events(
        self,
        aggregation_id: str,
        *,
        event_type: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[StoredEvent]:
        """One page of the events behind a record (`{customerId}_{period}_{periodKey}`)."""
        return await self._call(
            calls.aggregation_events(
                aggregation_id, event_type=event_type, limit=limit, cursor=cursor
            )
        )

    def iter_aggregation_events(
        self, aggregation_id: str, *, event_type: str | None = None, page_size: int = 1000
    ) -> AsyncIterator[StoredEvent]:
        """Every event behind a record, fetched page by page (`async for`)."""
        return self._iterate(
            lambda cursor: calls.aggregation_events(
                aggregation_id, event_type=event_type, limit=page_size, cursor=cursor
            )
        )

    async def get_event(self, event_id: str) -> EventDetail:
        """One event with its status and correction history (voided, amends, amended by)."""
        return await self._call(calls.get_event(event_id))

    async def void(self, event_id: str, reason: str) -> VoidResult:
        """Void an event: it leaves every total, and closed records it was in get a new
        revision. Voiding it again answers the first void."""
        return await self._call(calls.void_event(event_id, reason))

    async def amend(
        self,
        event_id: str,
        reason: str,
        *,
        value: float | None = None,
        timestamp: datetime | int | str | None = None,
        metadata: Mapping[str, Any] | None = None,
        customer_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> Amendment:
        """Replace an event by a corrected copy (the original is voided); returns the copy.

        Retries are safe: they carry one Idempotency-Key (`idempotency_key`, or a new one).
        Raises `Conflict` when the event is already voided.
        """
        changes = calls.amend_changes(
            value=value, timestamp=timestamp, metadata=metadata, customer_id=customer_id
        )
        return await self._call(
            calls.amend_event(event_id, reason, changes, idempotency_key=idempotency_key)
        )

    async def revisions(self, aggregation_id: str) -> list[Revision]:
        """Every revision of a record, oldest first (revision 1 is the record as closed);
        empty while the record is open."""
        return await self._call(calls.revisions(aggregation_id))

    async def trigger(self) -> TriggerResult:
        """Aggregate every period now: close completed periods, write open records."""
        return await self._call(calls.trigger())

    async def usage(
        self, customer_id: str, period: str | None = None, at: Moment | None = None
    ) -> Usage:
        """Live values of the customer's period containing `at` (default: now, monthly)."""
        return await self._call(calls.usage(customer_id, period=period, at=at))

    async def usage_query(
        self,
        meter: str,
        *,
        from_: Moment | None = None,
        to: Moment | None = None,
        window_size: str | None = None,
        window_time_zone: str | None = None,
        customer_ids: Sequence[str] = (),
        group_by: Sequence[str] = (),
        filters: Mapping[str, str | Sequence[str]] | None = None,
    ) -> UsageQueryResult:
        """A meter's usage per window, customer and group (GET /usage/query).

        `filters` maps a groupBy key to the value(s) to keep, e.g. {"model": ["a", "b"]}.
        """
        return await self._call(
            calls.usage_query(
                meter,
                from_=from_,
                to=to,
                window_size=window_size,
                window_time_zone=window_time_zone,
                customer_ids=customer_ids,
                group_by=group_by,
                filters=filters,
            )
        )

    async def deliveries(
        self,
        status: DeliveryStatus | None = None,
        *,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[Delivery]:
        """One page of webhook deliveries, newest first."""
        return await self._call(calls.list_deliveries(status=status, limit=limit, cursor=cursor))

    def iter_deliveries(
        self, status: DeliveryStatus | None = None, *, page_size: int = 1000
    ) -> AsyncIterator[Delivery]:
        """Every webhook delivery (with `status`), newest first (`async for`)."""
        return self._iterate(
            lambda cursor: calls.list_deliveries(status=status, limit=page_size, cursor=cursor)
        )

    async def delivery(self, delivery_id: int) -> Delivery:
        """One delivery with its payload and attempt log."""
        return await self._call(calls.get_delivery(delivery_id))

    async def redeliver(self, delivery_id: int) -> Delivery:
        """Make a delivery due now, with a fresh retry schedule."""
        return await self._call(calls.redeliver(delivery_id))

    async def health(self) -> Health:
        """Readiness, in one attempt; a down database is an answer (`ok` False), not an error."""
        return await self._call(calls.health())

    async def info(self) -> ServiceInfo:
        return await self._call(calls.info())

    async def config(self) -> dict[str, Any]:
        """The server's loaded configuration, webhook secrets redacted."""
        return await self._call(calls.config())

    async def put_customer(
        self,
        customer_id: str,
        *,
        plan: str | None,
        stripe_customer: str | None = None,
        limits: Mapping[str, Any] | None = None,
    ) -> Customer:
        """Create or replace a customer; a plan change applies from the next plan period."""
        return await self._call(
            calls.put_customer(
                customer_id, plan=plan, stripe_customer=stripe_customer, limits=limits
            )
        )

    async def customer(self, customer_id: str) -> Customer:
        return await self._call(calls.get_customer(customer_id))

    async def customers(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[Customer]:
        """One page of customers, in id order."""
        return await self._call(calls.list_customers(limit=limit, cursor=cursor))

    async def entitlement(
        self, customer_id: str, meter: str, *, fresh: bool = False
    ) -> Entitlement:
        """May the customer still use `meter` (`has_access`), with usage, limit and remaining.

        Answers are kept `entitlement_cache_ttl` seconds (a constructor argument; 0 by
        default); `fresh=True` asks the server anyway.
        """
        key = (customer_id, meter)
        cached = None if fresh else self._entitlements.get(key)
        if cached is not None:
            return cached
        answer = await self._call(calls.entitlement(customer_id, meter))
        self._entitlements.put(key, answer)
        return answer

    async def entitlements(self, customer_id: str) -> list[Entitlement]:
        """Every configured meter's entitlement for the customer (never cached)."""
        return (await self._call(calls.entitlements(customer_id))).entitlements

    async def invoice_preview(self, customer_id: str) -> InvoicePreview:
        """The customer's current plan period priced from live usage."""
        return await self._call(calls.invoice_preview(customer_id))

    async def invoices(
        self,
        *,
        customer_id: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[Invoice]:
        """One page of invoice records, newest period first."""
        return await self._call(
            calls.list_invoices(customer_id=customer_id, status=status, limit=limit, cursor=cursor)
        )

    async def invoice(self, invoice_id: str) -> Invoice:
        return await self._call(calls.get_invoice(invoice_id))

    async def resend_invoice(self, invoice_id: str) -> Invoice:
        """Send a draft or failed invoice to Stripe again (409 if it was sent)."""
        return await self._call(calls.resend_invoice(invoice_id))

    # -- plumbing -----------------------------------------------------------------------

    async def _iterate(self, page_call: Callable[[str | None], Call[Page[T]]]) -> AsyncIterator[T]:
        cursor: str | None = None
        while True:
            page = await self._call(page_call(cursor))
            for item in page.items:
                yield item
            if page.next_cursor is None or page.next_cursor == cursor:
                return
            cursor = page.next_cursor

    async def _call(self, call: Call[T]) -> T:
        response = await self._send(call)
        try:
            return call.read(response)
        except msgspec.DecodeError as error:
            raise UnexpectedResponse(f"{call.method} {call.path}: {error}") from error

    async def _send(self, call: Call[Any]) -> httpx.Response:
        if self._http.is_closed:
            raise ClientClosed()
        retry = 0
        while True:
            try:
                response = await self._http.request(
                    call.method,
                    call.path,
                    params=call.params,
                    content=call.body,
                    headers=call.request_headers(),
                )
            except httpx.TransportError as error:
                delay = self._retry.delay(retry) if call.retry else None
                if delay is None:
                    message = calls.unreachable(self._http.base_url, error, retry)
                    raise ConnectionFailed(message) from error
            else:
                if response.is_success or response.status_code in call.accept:
                    return response
                delay = self._retry.delay(retry, response) if call.retry else None
                if delay is None:
                    raise error_for_response(response)
            await asyncio.sleep(delay)
            retry += 1

    async def __aenter__(self) -> AsyncMeterdClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
