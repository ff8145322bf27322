"""The client's exception hierarchy: every error it raises is a `MeterdError`.

Each class's docstring is its default message. `APIError` and its subclasses
mean the server answered with an error status; `error_for_response` picks the
class from the status code in one place.
"""

from __future__ import annotations

from typing import Any

import httpx
import msgspec

_error_body = msgspec.json.Decoder(dict[str, Any])


class MeterdError(Exception):
    """A meterd client call failed."""

    def __init__(self, message: str | None = None) -> None:
        self.message = message or (type(self).__doc__ or "").strip()
        super().__init__(self.message)


class ClientClosed(MeterdError):
    """The client is closed: create a new one."""


class QueueFull(MeterdError):
    """max_queue events are waiting to be sent; the event was not queued."""


class FlushTimeout(MeterdError, TimeoutError):
    """Events were still waiting to be sent when the timeout passed."""


class ConnectionFailed(MeterdError):
    """The server could not be reached (after retries); `__cause__` is the httpx error."""


class UnexpectedResponse(MeterdError):
    """The server's answer could not be read as the expected JSON."""


class APIError(MeterdError):
    """The server answered with an error."""

    def __init__(self, status_code: int, body: dict[str, Any], message: str | None = None) -> None:
        self.status_code = status_code
        # The server's JSON error body: {"error": "...", ...details}.
        self.body = body
        detail = message or body.get("error") or (type(self).__doc__ or "").strip()
        super().__init__(f"{status_code}: {detail}")


class BadRequest(APIError):
    """The request is not valid (400)."""


class Unauthorized(APIError):
    """The API key is missing, unknown or revoked (401)."""


class NotFound(APIError):
    """No such resource (404)."""


class Conflict(APIError):
    """The request conflicts with the resource's state (409): e.g. amending a voided event."""


class IdConflict(Conflict):
    """The event id (or Idempotency-Key) was already used for a different event (409).

    Nothing was stored. A retry must send exactly the same event; a new event needs
    a new id. In a batch the server answers 422 instead: see `InvalidEvents`.
    """

    @property
    def id(self) -> str | None:
        value = self.body.get("id")
        return value if isinstance(value, str) else None


class PayloadTooLarge(APIError):
    """The request body is larger than the server accepts (413)."""


class BatchTooLarge(PayloadTooLarge):
    """The batch holds more events than the server's maxBatchSize (413)."""

    @property
    def received(self) -> int | None:
        value = self.body.get("received")
        return value if isinstance(value, int) else None

    @property
    def max_allowed(self) -> int | None:
        value = self.body.get("maxAllowed")
        return value if isinstance(value, int) else None


class ValidationProblem(msgspec.Struct, frozen=True):
    """The problems of one event of a batch; `index` is its position in the batch.

    `field` names the field at fault when there is one (`"id"` for a reused id).
    """

    index: int
    errors: list[str]
    field: str | None = None


class InvalidEvents(APIError):
    """Some events are invalid; nothing of the batch was stored (422)."""

    def __init__(self, status_code: int, body: dict[str, Any]) -> None:
        try:
            problems = msgspec.convert(body.get("validationErrors") or [], list[ValidationProblem])
        except msgspec.ValidationError:
            problems = []
        self.validation_errors: list[ValidationProblem] = problems
        listed = "; ".join(f"[{p.index}] {', '.join(p.errors)}" for p in problems[:5])
        more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        summary = body.get("error") or (type(self).__doc__ or "").strip()
        super().__init__(status_code, body, f"{summary}: {listed}{more}" if listed else None)

    @property
    def valid_count(self) -> int | None:
        value = self.body.get("validCount")
        return value if isinstance(value, int) else None

    @property
    def invalid_count(self) -> int | None:
        value = self.body.get("invalidCount")
        return value if isinstance(value, int) else None


class RateLimited(APIError):
    """The server asked to slow down (429), and retries did not help."""


class ServerError(APIError):
    """The server failed or is unavailable (5xx), and retries did not help."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequest,
    401: Unauthorized,
    404: NotFound,
    409: Conflict,
    429: RateLimited,
}


def error_for_response(response: httpx.Response) -> APIError:
    """The exception for an error answer, carrying the server's JSON body."""
    status = response.status_code
    try:
        body = _error_body.decode(response.content)
    except msgspec.DecodeError:
        text = response.text.strip()[:200]
        body = {"error": text or response.reason_phrase}
    if status == 422:
        return InvalidEvents(status, body)
    if status == 413:
        return (
            BatchTooLarge(status, body) if "maxAllowed" in body else PayloadTooLarge(status, body)
        )
    if status >= 500:
        return ServerError(status, body)
    if status == 409 and body.get("field") in ("id", "Idempotency-Key"):
        return IdConflict(status, body)
    return _BY_STATUS.get(status, APIError)(status, body)


# Errors after which sending the same request again later may succeed.
TRANSIENT_ERRORS: tuple[type[MeterdError], ...] = (ConnectionFailed, ServerError, RateLimited)
