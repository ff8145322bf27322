"""Every API call as data: method, path, query, body and how to read the answer.

The sync and the asyncio client both build their requests here, so they differ
only in how they send them.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from meterd import __version__
from meterd.client.models import (
    Aggregation,
    Amendment,
    BatchResult,
    CaptureResult,
    Customer,
    Delivery,
    DeliveryStatus,
    Entitlement,
    Entitlements,
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

T = TypeVar("T")

Moment = datetime | int | str
"""An instant for a filter: a datetime (naive = UTC), epoch milliseconds or ISO-8601 text."""

NEXT_CURSOR_HEADER = "x-next-cursor"

JSON_HEADERS = {"content-type": "application/json"}

_encoder = msgspec.json.Encoder()


def auth_headers(api_key: str) -> dict[str, str]:
    if not api_key:
        raise ValueError("api_key: required")
    return {"x-apikey": api_key, "user-agent": f"meterd-client/{__version__}"}


def unreachable(base_url: httpx.URL, error: httpx.TransportError, retries: int) -> str:
    kind = type(error).__name__
    return f"cannot reach {base_url} ({kind}: {error or 'no detail'}) after {retries} retries"


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request and the reader of its successful answer."""

    method: str
    path: str
    read: Callable[[httpx.Response], T]
    params: Mapping[str, str | list[str]] = field(default_factory=dict)
    body: bytes | None = None
    retry: bool = True
    # Error statuses that are still answers to read, not errors (readiness: 503).
    accept: frozenset[int] = frozenset()
    headers: dict[str, str] = field(default_factory=dict)

    def request_headers(self) -> dict[str, str] | None:
        if self.body is None and not self.headers:
            return None
        return {**(JSON_HEADERS if self.body is not None else {}), **self.headers}


def _reader(decoder: msgspec.json.Decoder[T]) -> Callable[[httpx.Response], T]:
    return lambda response: decoder.decode(response.content)


def _page_reader(decoder: msgspec.json.Decoder[list[T]]) -> Callable[[httpx.Response], Page[T]]:
    def read(response: httpx.Response) -> Page[T]:
        cursor = response.headers.get(NEXT_CURSOR_HEADER) or None
        return Page(items=decoder.decode(response.content), next_cursor=cursor)

    return read


_capture = _reader(msgspec.json.Decoder(CaptureResult))
_batch = _reader(msgspec.json.Decoder(BatchResult))
_events = _page_reader(msgspec.json.Decoder(list[StoredEvent]))
_aggregations = _page_reader(msgspec.json.Decoder(list[Aggregation]))
_deliveries = _page_reader(msgspec.json.Decoder(list[Delivery]))
_delivery = _reader(msgspec.json.Decoder(Delivery))
_trigger = _reader(msgspec.json.Decoder(TriggerResult))
_usage = _reader(msgspec.json.Decoder(Usage))
_customer = _reader(msgspec.json.Decoder(Customer))
_customers = _page_reader(msgspec.json.Decoder(list[Customer]))
_entitlement = _reader(msgspec.json.Decoder(Entitlement))
_entitlements = _reader(msgspec.json.Decoder(Entitlements))
_preview = _reader(msgspec.json.Decoder(InvoicePreview))
_invoice = _reader(msgspec.json.Decoder(Invoice))
_invoices = _page_reader(msgspec.json.Decoder(list[Invoice]))
_usage_query = _reader(msgspec.json.Decoder(UsageQueryResult))
_health = _reader(msgspec.json.Decoder(Health))
_info = _reader(msgspec.json.Decoder(ServiceInfo))
_config = _reader(msgspec.json.Decoder(dict[str, Any]))
_event_detail = _reader(msgspec.json.Decoder(EventDetail))
_void = _reader(msgspec.json.Decoder(VoidResult))
_amendment = _reader(msgspec.json.Decoder(Amendment))
_revisions = _reader(msgspec.json.Decoder(list[Revision]))


def new_event_id() -> str:
    """32 hex digits: epoch ms, then 80 random bits.

    Unique without coordination, and time-ordered, so the server's id index
    grows at its end.
    """
    return f"{time.time_ns() // 1_000_000:012x}{os.urandom(10).hex()}"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def make_event(
    event_type: str,
    customer_id: str,
    value: float,
    *,
    metadata: Mapping[str, Any] | None = None,
    timestamp: datetime | int | None = None,
    id: str | None = None,
) -> Event:
    """An `Event` with an id (a new one unless given); raises TypeError/ValueError early."""
    for name, text in (("event_type", event_type), ("customer_id", customer_id)):
        if not isinstance(text, str) or not text:
            raise ValueError(f"{name}: must be a non-empty string, not {text!r}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"value: must be a number, not {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"value: must be finite, not {value!r}")
    if metadata is not None and not isinstance(metadata, Mapping):
        raise TypeError(f"metadata: must be a mapping, not {type(metadata).__name__}")
    if timestamp is not None and (
        isinstance(timestamp, bool) or not isinstance(timestamp, datetime | int)
    ):
        raise TypeError("timestamp: must be a datetime or epoch milliseconds")
    if id is not None and (not isinstance(id, str) or not id):
        raise ValueError(f"id: must be a non-empty string, not {id!r}")
    return Event(
        event_type=event_type,
        customer_id=customer_id,
        value=value,
        metadata=None if metadata is None else dict(metadata),
        timestamp=timestamp,
        id=id or new_event_id(),
    )


def encode_event(event: Event) -> bytes:
    """The event's JSON; raises TypeError when its metadata is not JSON-serialisable."""
    return _encoder.encode(event)


def with_id(event: Event) -> Event:
    """`event` itself when it has an id, else a copy with a new one (so retries are safe)."""
    return event if event.id else msgspec.structs.replace(event, id=new_event_id())


def _time_param(moment: Moment) -> str:
    if isinstance(moment, datetime):
        return moment.isoformat()
    return str(moment)


def _query(**values: Moment | None) -> dict[str, str]:
    """Query parameters, without the unset ones; `from_` is sent as `from`."""
    return {
        name.rstrip("_"): _time_param(value) for name, value in values.items() if value is not None
    }


def _segment(text: str) -> str:
    return quote(text, safe="")


def capture(event: Event) -> Call[CaptureResult]:
    body: dict[str, Any] = {"customerId": event.customer_id, "value": event.value, "id": event.id}
    if event.metadata is not None:
        body["metadata"] = event.metadata
    if event.timestamp is not None:
        body["timestamp"] = event.timestamp
    return Call(
        "POST", f"/usage/{_segment(event.event_type)}", _capture, body=_encoder.encode(body)
    )


def capture_batch(events: Sequence[Event]) -> Call[BatchResult]:
    return Call("POST", "/usagebatch", _batch, body=_encoder.encode(list(events)))


def capture_encoded(encoded: Sequence[bytes]) -> Call[BatchResult]:
    """A batch of events already encoded by `encode_event`."""
    return Call("POST", "/usagebatch", _batch, body=b"[" + b",".join(encoded) + b"]")


def list_events(
    *,
    customer_id: str | None = None,
    event_type: str | None = None,
    from_: Moment | None = None,
    to: Moment | None = None,
    limit: int | None = None,
    cursor: str | None = None,
    include_voided: bool = False,
) -> Call[Page[StoredEvent]]:
    params = _query(
        customerId=customer_id, eventType=event_type, from_=from_, to=to, limit=limit, cursor=cursor
    )
    if include_voided:
        params["includeVoided"] = "true"
    return Call("GET", "/events", _events, params=params)


def get_event(event_id: str) -> Call[EventDetail]:
    return Call("GET", f"/events/{_segment(event_id)}", _event_detail)


def void_event(event_id: str, reason: str) -> Call[VoidResult]:
    # Safe to retry: voiding a voided event answers the first void.
    body = _encoder.encode({"reason": reason})
    return Call("POST", f"/events/{_segment(event_id)}/void", _void, body=body)


def amend_event(
    event_id: str,
    reason: str,
    changes: Mapping[str, Any],
    *,
    idempotency_key: str | None = None,
) -> Call[Amendment]:
    """An amend; retried safely under an Idempotency-Key (a new one unless given)."""
    body = _encoder.encode({"reason": reason, **changes})
    key = idempotency_key or new_event_id()
    return Call(
        "POST",
        f"/events/{_segment(event_id)}/amend",
        _amendment,
        body=body,
        headers={"idempotency-key": key},
    )


def amend_changes(
    *,
    value: float | None = None,
    timestamp: datetime | int | str | None = None,
    metadata: Mapping[str, Any] | None = None,
    customer_id: str | None = None,
) -> dict[str, Any]:
    """The fields an amend changes, as the API names them (None: unchanged)."""
    changes: dict[str, Any] = {}
    if value is not None:
        changes["value"] = value
    if timestamp is not None:
        changes["timestamp"] = timestamp
    if metadata is not None:
        changes["metadata"] = dict(metadata)
    if customer_id is not None:
        changes["customerId"] = customer_id
    return changes


def revisions(aggregation_id: str) -> Call[list[Revision]]:
    return Call("GET", f"/aggregations/{_segment(aggregation_id)}/revisions", _revisions)


def list_aggregations(
    *,
    customer_id: str | None = None,
    period: str | None = None,
    from_: Moment | None = None,
    to: Moment | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Call[Page[Aggregation]]:
    params = _query(
        customerId=customer_id, period=period, from_=from_, to=to, limit=limit, cursor=cursor
    )
    return Call("GET", "/aggregations", _aggregations, params=params)


def aggregation_events(
    aggregation_id: str,
    *,
    event_type: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Call[Page[StoredEvent]]:
    path = f"/aggregations/{_segment(aggregation_id)}/events"
    return Call(
        "GET", path, _events, params=_query(eventType=event_type, limit=limit, cursor=cursor)
    )


def trigger() -> Call[TriggerResult]:
    return Call("POST", "/aggregations/trigger", _trigger)


def usage(customer_id: str, *, period: str | None, at: Moment | None) -> Call[Usage]:
    path = f"/customers/{_segment(customer_id)}/usage"
    return Call("GET", path, _usage, params=_query(period=period, at=at))


def usage_query(
    meter: str,
    *,
    from_: Moment | None = None,
    to: Moment | None = None,
    window_size: str | None = None,
    window_time_zone: str | None = None,
    customer_ids: Sequence[str] = (),
    group_by: Sequence[str] = (),
    filters: Mapping[str, str | Sequence[str]] | None = None,
) -> Call[UsageQueryResult]:
    params: dict[str, str | list[str]] = {"meter": meter}
    params.update(_query(from_=from_, to=to))
    if window_size:
        params["windowSize"] = window_size
    if window_time_zone:
        params["windowTimeZone"] = window_time_zone
    if customer_ids:
        params["customerId"] = list(customer_ids)
    if group_by:
        params["groupBy"] = list(group_by)
    pairs = []
    for key, accepted in (filters or {}).items():
        for value in [accepted] if isinstance(accepted, str) else accepted:
            pairs.append(f"{key}:{value}")
    if pairs:
        params["filter"] = pairs
    return Call("GET", "/usage/query", _usage_query, params=params)


def list_deliveries(
    *, status: DeliveryStatus | None = None, limit: int | None = None, cursor: str | None = None
) -> Call[Page[Delivery]]:
    params = _query(status=status, limit=limit, cursor=cursor)
    return Call("GET", "/deliveries", _deliveries, params=params)


def get_delivery(delivery_id: int) -> Call[Delivery]:
    return Call("GET", f"/deliveries/{int(delivery_id)}", _delivery)


def redeliver(delivery_id: int) -> Call[Delivery]:
    return Call("POST", f"/deliveries/{int(delivery_id)}/redeliver", _delivery)


def health() -> Call[Health]:
    # One attempt: a readiness probe wants the current answer, 503 included.
    return Call("GET", "/health", _health, retry=False, accept=frozenset({503}))


def info() -> Call[ServiceInfo]:
    return Call("GET", "/", _info)


def config() -> Call[dict[str, Any]]:
    return Call("GET", "/config", _config)


def put_customer(
    customer_id: str,
    *,
    plan: str | None,
    stripe_customer: str | None = None,
    limits: Mapping[str, Any] | None = None,
) -> Call[Customer]:
    body: dict[str, Any] = {"plan": plan}
    if stripe_customer is not None:
        body["stripeCustomer"] = stripe_customer
    if limits is not None:
        body["limits"] = dict(limits)
    path = f"/customers/{_segment(customer_id)}"
    return Call("PUT", path, _customer, body=_encoder.encode(body))


def get_customer(customer_id: str) -> Call[Customer]:
    return Call("GET", f"/customers/{_segment(customer_id)}", _customer)


def list_customers(*, limit: int | None = None, cursor: str | None = None) -> Call[Page[Customer]]:
    return Call("GET", "/customers", _customers, params=_query(limit=limit, cursor=cursor))


def entitlement(customer_id: str, meter: str) -> Call[Entitlement]:
    path = f"/customers/{_segment(customer_id)}/entitlements/{_segment(meter)}"
    return Call("GET", path, _entitlement)


def entitlements(customer_id: str) -> Call[Entitlements]:
    return Call("GET", f"/customers/{_segment(customer_id)}/entitlements", _entitlements)


def invoice_preview(customer_id: str) -> Call[InvoicePreview]:
    return Call("GET", f"/customers/{_segment(customer_id)}/invoice-preview", _preview)


def list_invoices(
    *,
    customer_id: str | None = None,
    status: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Call[Page[Invoice]]:
    params = _query(customerId=customer_id, status=status, limit=limit, cursor=cursor)
    return Call("GET", "/invoices", _invoices, params=params)


def get_invoice(invoice_id: str) -> Call[Invoice]:
    return Call("GET", f"/invoices/{_segment(invoice_id)}", _invoice)


def resend_invoice(invoice_id: str) -> Call[Invoice]:
    return Call("POST", f"/invoices/{_segment(invoice_id)}/resend", _invoice)
