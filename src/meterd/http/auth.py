"""API-key authentication, checked before routing."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Receive, Scope, Send

from meterd.apikeys import hash_key
from meterd.errors import MeterdError, Unauthorized
from meterd.http.responses import error_response, meterd_error_response
from meterd.storage.base import Store

PUBLIC_PATHS = frozenset({"/", "/ping", "/health", "/openapi.json", "/docs"})
PUBLIC_PREFIXES = ("/docs/",)


class KeyRing:
    """The accepted key hashes, cached in memory.

    A key created by `meterd keys create` works at once (an unknown key
    triggers a reload, at most once a second); a revoked key stops working
    within `refresh_seconds`.
    """

    def __init__(self, store: Store, plain_keys: tuple[str, ...], refresh_seconds: float = 5.0):
        self._store = store
        self._plain = {hash_key(key) for key in plain_keys}
        self._hashes: set[str] = set(self._plain)
        self._refresh_seconds = refresh_seconds
        self._loaded_at = float("-inf")

    async def accepts(self, key: str) -> bool:
        digest = hash_key(key)
        age = time.monotonic() - self._loaded_at
        if age > self._refresh_seconds or (digest not in self._hashes and age > 1.0):
            await self._reload()
        return digest in self._hashes

    async def _reload(self) -> None:
        self._loaded_at = time.monotonic()
        self._hashes = self._plain | await self._store.active_api_key_hashes()


class ApiKeyMiddleware:
    def __init__(
        self, app: ASGIApp, keyring: KeyRing, public_paths: frozenset[str] = frozenset()
    ) -> None:
        self.app = app
        self.keyring = keyring
        self.public_paths = PUBLIC_PATHS | public_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" else None
        if (
            path is not None
            and path not in self.public_paths
            and not path.startswith(PUBLIC_PREFIXES)
        ):
            key = _presented_key(scope)
            try:
                accepted = key is not None and await self.keyring.accepts(key)
            except MeterdError as error:
                # The key list could not be reloaded (database down): 503, never 500.
                await meterd_error_response(error)(scope, receive, send)
                return
            if not accepted:
                response = error_response(401, Unauthorized().message)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _presented_key(scope: Scope) -> str | None:
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    for name, value in headers:
        if name == b"x-apikey":
            return value.decode("latin-1") or None
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None
