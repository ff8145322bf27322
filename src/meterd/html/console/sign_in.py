"""Signing in with an API key, and signing out."""

from __future__ import annotations

import secrets

import msgspec
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from meterd.apikeys import hash_key
from meterd.console_sessions import SESSION_TTL_MS, close_session, open_session
from meterd.html.console.auth import SESSION_COOKIE, SIGN_IN_COOKIE, form_fields
from meterd.html.console.deps import ConsoleDeps
from meterd.timeutil import now_ms

SIGN_IN_COOKIE_SECONDS = 3600


class SignInPage(msgspec.Struct, frozen=True):
    csrf: str
    error: str | None = None


def sign_in_routes(deps: ConsoleDeps) -> list[Route]:
    def form(request: Request, *, error: str | None = None, status_code: int = 200) -> Response:
        # Login CSRF: the form's token must match this cookie (double submit).
        token = request.cookies.get(SIGN_IN_COOKIE) or secrets.token_urlsafe(24)
        response = deps.renderer.response(
            "sign_in.html", SignInPage(token, error), status_code=status_code
        )
        response.set_cookie(
            SIGN_IN_COOKIE,
            token,
            max_age=SIGN_IN_COOKIE_SECONDS,
            path="/console",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def show(request: Request) -> Response:
        return form(request)

    async def sign_in(request: Request) -> Response:
        key = form_fields(await request.body()).get("apiKey", "")
        if not key or len(key) > 256 or not await deps.keyring.accepts(key):
            return form(request, error="That API key is not accepted.", status_code=401)
        token, _ = await open_session(deps.store, key_hash=hash_key(key), now_ms=now_ms())
        response = RedirectResponse("/console/", status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=SESSION_TTL_MS // 1000,
            path="/console",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        response.delete_cookie(SIGN_IN_COOKIE, path="/console")
        return response

    async def sign_out(request: Request) -> Response:
        await close_session(deps.store, token=request.state.signed_in.token)
        response = RedirectResponse("/console/sign-in", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/console")
        return response

    return [
        Route("/sign-in", show, methods=["GET"]),
        Route("/sign-in", sign_in, methods=["POST"]),
        Route("/sign-out", sign_out, methods=["POST"]),
    ]
