"""API-key authentication, checked before routing."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from meterd.errors import StorageUnavailable, Unauthorized
from meterd.http.responses import error_response, meterd_error_response
from meterd.keyring import KeyRing

PUBLIC_PATHS = frozenset({"/", "/ping", "/health", "/openapi.json", "/docs", "/console"})
# The console (session cookie) and the portal (token in the path) do their own auth.
PUBLIC_PREFIXES = ("/docs/", "/console/", "/portal/", "/static/")
# Issuing and revoking portal tokens is an API call: it needs an API key.
PORTAL_TOKEN_PATHS = frozenset({"/portal/tokens", "/portal/tokens/revoke"})
# Surfaces mounted with their own authentication (and their own error format).
OWN_AUTH_PREFIXES = ("/api/v1/",)


class ApiKeyMiddleware:
    def __init__(
        self, app: ASGIApp, keyring: KeyRing, public_paths: frozenset[str] = frozenset()
    ) -> None:
        self.app = app
        self.keyring = keyring
        self.public_paths = PUBLIC_PATHS | public_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" else None
        if path is not None and not self._is_public(path):
            key = presented_key(scope)
            try:
                accepted = key is not None and (
                    self.keyring.accepts_cached(key) or await self.keyring.accepts(key)
                )
            except StorageUnavailable as error:
                # The key hashes could not be re-read: a retryable 503, never a 500.
                await meterd_error_response(error)(scope, receive, send)
                return
            if not accepted:
                response = error_response(401, Unauthorized().message)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _is_public(self, path: str) -> bool:
        if path in PORTAL_TOKEN_PATHS:
            return False
        return path in self.public_paths or path.startswith(PUBLIC_PREFIXES + OWN_AUTH_PREFIXES)


def presented_key(scope: Scope) -> str | None:
    """The API key a request carries, if any."""
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    for name, value in headers:
        if name == b"x-apikey":
            return value.decode("latin-1") or None
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None
