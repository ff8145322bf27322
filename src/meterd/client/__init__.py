"""A Python client for meterd's HTTP API: `MeterdClient` (threads) and `AsyncMeterdClient`.

    with MeterdClient("http://127.0.0.1:8080", "mk_...") as meter:
        meter.track("api.calls", "sub_ABC123", 1)   # batched in the background

Needs only httpx and msgspec; it imports nothing of the server.
"""

from meterd.client.aio import AsyncMeterdClient
from meterd.client.batching import FailedBatch
from meterd.client.errors import (
    APIError,
    BadRequest,
    BatchTooLarge,
    ClientClosed,
    ConnectionFailed,
    FlushTimeout,
    IdConflict,
    InvalidEvents,
    MeterdError,
    NotFound,
    PayloadTooLarge,
    QueueFull,
    RateLimited,
    ServerError,
    Unauthorized,
    UnexpectedResponse,
    ValidationProblem,
)
from meterd.client.models import (
    Aggregation,
    Attempt,
    BatchResult,
    CaptureResult,
    Customer,
    Delivery,
    Entitlement,
    Event,
    GroupValue,
    Health,
    Invoice,
    InvoiceLine,
    InvoicePreview,
    Page,
    ServiceInfo,
    StoredEvent,
    TriggerResult,
    Usage,
    UsageQueryResult,
    UsageRow,
    WebhookStatus,
)
from meterd.client.retry import RetryPolicy
from meterd.client.sync import MeterdClient

__all__ = [
    "APIError",
    "Aggregation",
    "AsyncMeterdClient",
    "Attempt",
    "BadRequest",
    "BatchResult",
    "BatchTooLarge",
    "CaptureResult",
    "ClientClosed",
    "ConnectionFailed",
    "Customer",
    "Delivery",
    "Entitlement",
    "Event",
    "FailedBatch",
    "FlushTimeout",
    "Health",
    "IdConflict",
    "InvalidEvents",
    "Invoice",
    "InvoiceLine",
    "InvoicePreview",
    "MeterdClient",
    "MeterdError",
    "NotFound",
    "Page",
    "PayloadTooLarge",
    "QueueFull",
    "RateLimited",
    "RetryPolicy",
    "ServerError",
    "ServiceInfo",
    "StoredEvent",
    "TriggerResult",
    "Unauthorized",
    "UnexpectedResponse",
    "GroupValue",
    "Usage",
    "UsageQueryResult",
    "UsageRow",
    "ValidationProblem",
    "WebhookStatus",
]
