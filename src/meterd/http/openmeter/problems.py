"""RFC 9457 problem details: how every error under /api/v1 is answered.

`{"type": "about:blank", "title": "Bad Request", "status": 400, "detail": "...",
"instance": "/api/v1/events", ...}`; an error's details (`validationErrors`,
`maxAllowed`, ...) are extension members beside them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from meterd import errors
from meterd.errors import STATUS_CODES

log = logging.getLogger("meterd.http.openmeter")

MEDIA_TYPE = "application/problem+json"
_encode = msgspec.json.Encoder().encode
# OpenMeter answers an invalid event with 400, whether it came alone or in a batch.
_OWN_STATUS_CODES: dict[type[errors.MeterdError], int] = {errors.ValidationFailed: 400}


def problem(
    status: int,
    detail: str,
    *,
    instance: str,
    headers: Mapping[str, str] | None = None,
    **extensions: Any,
) -> Response:
    if status == 503:
        headers = {"Retry-After": "1", **(headers or {})}
    body = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": instance,
        **extensions,
    }
    return Response(_encode(body), status_code=status, headers=headers, media_type=MEDIA_TYPE)


def status_of(error: errors.MeterdError) -> int:
    for table in (_OWN_STATUS_CODES, STATUS_CODES):
        for cls, code in table.items():
            if isinstance(error, cls):
                return code
    return 500


async def meterd_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.MeterdError)
    status = status_of(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return problem(status, exc.message, instance=request.url.path, headers=headers, **exc.details)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return problem(exc.status_code, exc.detail, instance=request.url.path, headers=exc.headers)


async def unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return problem(500, "internal error; see the server log", instance=request.url.path)


EXCEPTION_HANDLERS = {
    errors.MeterdError: meterd_error,
    HTTPException: http_error,
    Exception: unexpected_error,
}
