"""JSON responses encoded with msgspec; errors answer with `errors.status_code_of`."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from meterd import errors

log = logging.getLogger("meterd.http")

_encoder = msgspec.json.Encoder()


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _encoder.encode(content)


def error_response(
    status_code: int, message: str, headers: dict[str, str] | None = None, **details: Any
) -> JSONResponse:
    if status_code == 503:
        headers = {"Retry-After": "1", **(headers or {})}
    return JSONResponse({"error": message, **details}, status_code=status_code, headers=headers)


def meterd_error_response(error: errors.MeterdError) -> JSONResponse:
    return error_response(errors.status_code_of(error), error.message, **error.details)


async def meterd_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.MeterdError)
    return meterd_error_response(exc)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, exc.detail, path=shown_path(request.url.path))


def shown_path(path: str) -> str:
    """A request path as an error body repeats it: cut like any other input."""
    limit = errors.SHOWN_CHARS
    return path if len(path) <= limit else f"{path[:limit]}... ({len(path)} characters)"


async def unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(500, "internal error; see the server log")
