"""Errors on the HTML surfaces: an HTML page with the status the API would give."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from meterd import errors
from meterd.html.render import Renderer

log = logging.getLogger("meterd.html")

TITLES = {400: "Bad request", 401: "Not signed in", 404: "Not found", 405: "Not allowed"}


class ErrorPage(msgspec.Struct, frozen=True):
    title: str
    message: str
    back_href: str | None = None
    back_label: str = "Back"


Handler = Callable[[Request, Exception], Awaitable[Response]]


def error_handlers(
    renderer: Renderer, *, back_href: str | None, back_label: str
) -> dict[Any, Handler]:
    """Starlette exception handlers that answer with the error page."""

    def page(status: int, message: str) -> Response:
        title = TITLES.get(status, "Unavailable" if status == 503 else "Error")
        return renderer.response(
            "error.html",
            ErrorPage(title, message, back_href, back_label),
            status_code=status,
            headers={"Retry-After": "1"} if status == 503 else None,
        )

    async def meterd_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, errors.MeterdError)
        return page(errors.status_code_of(exc), exc.message)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return page(exc.status_code, exc.detail)

    async def unexpected_error(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return page(500, "Something went wrong; see the server log.")

    return {
        errors.MeterdError: meterd_error,
        HTTPException: http_error,
        Exception: unexpected_error,
    }
