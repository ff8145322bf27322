"""meterd's one exception hierarchy.

Each class's docstring is its default message; the HTTP layer maps classes to
status codes in one place (`meterd.http.responses`).
"""

from __future__ import annotations

from typing import Any

# Error messages quote at most this many characters of what the client sent.
SHOWN_CHARS = 200


def shown(text: str, limit: int = SHOWN_CHARS) -> str:
    """Client input as an error message quotes it: in quotes, escaped, cut to `limit`."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


class MeterdError(Exception):
    """Something went wrong in meterd."""

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = message or (type(self).__doc__ or "").strip()
        self.details = details
        super().__init__(self.message)


class InvalidRequest(MeterdError):
    """The request is not valid."""


class NotFound(MeterdError):
    """Not found."""


class Unauthorized(MeterdError):
    """A valid API key is required: send it in `x-apikey` or `Authorization: Bearer`."""


class PayloadTooLarge(MeterdError):
    """The request body is too large."""


class BatchTooLarge(MeterdError):
    """The batch holds more events than maxBatchSize allows."""


class ValidationFailed(MeterdError):
    """Some events are invalid; nothing was stored."""


class IdConflict(MeterdError):
    """An id was already used for a different event; nothing was stored.

    `conflicts` lists (index in the request, id, the fields that differ).
    """

    def __init__(self, conflicts: list[tuple[int, str, list[str]]]) -> None:
        self.conflicts = conflicts
        _, first_id, fields = conflicts[0]
        super().__init__(f"id {shown(first_id)} {conflict_text(fields)}", id=first_id, field="id")


def conflict_text(fields: list[str]) -> str:
    """Why a reused id was refused, in the client's field names."""
    differ = f"{fields[0]} differs" if len(fields) == 1 else f"{', '.join(fields)} differ"
    return (
        f"was already used for a different event ({differ}); nothing was stored. "
        "A retry must send the same content; a new event needs a new id"
    )


class StorageUnavailable(MeterdError):
    """The database cannot be reached or written; nothing was stored. Retry later."""


class Overloaded(MeterdError):
    """Too many events are waiting to be written; nothing was stored. Retry shortly."""


class SchemaTooNew(MeterdError):
    """The database was migrated by a newer meterd; upgrade meterd first."""


class Conflict(MeterdError):
    """The request conflicts with the current state of the resource."""


class PortalLinkInvalid(Unauthorized):
    """This portal link is not valid: it is unknown, expired or revoked."""


class UnsupportedMediaType(MeterdError):
    """The request body's Content-Type is not one this route accepts."""


class NotAvailable(MeterdError):
    """This build of meterd does not offer this yet."""


# HTTP status per error class, the first match in this order wins. The API's JSON
# (http/responses.py) and the HTML pages (html/errors.py) both answer with it.
STATUS_CODES: dict[type[MeterdError], int] = {
    InvalidRequest: 400,
    Unauthorized: 401,
    NotFound: 404,
    Conflict: 409,
    IdConflict: 409,
    PayloadTooLarge: 413,
    BatchTooLarge: 413,
    UnsupportedMediaType: 415,
    ValidationFailed: 422,
    NotAvailable: 501,
    StorageUnavailable: 503,
    Overloaded: 503,
    SchemaTooNew: 503,
}


def status_code_of(error: MeterdError) -> int:
    """The HTTP status an error answers with; 500 for one that has none."""
    return next((code for cls, code in STATUS_CODES.items() if isinstance(error, cls)), 500)
