"""The API keys meterd accepts, checked by hash and cached in memory."""

from __future__ import annotations

import time

from meterd.apikeys import hash_key
from meterd.storage.base import Store


class KeyRing:
    """The accepted key hashes, cached in memory.

    A key created by `meterd keys create` works at once (an unknown key
    triggers a reload, at most once a second); a revoked key stops working
    within `refresh_seconds`.
    """

    def __init__(self, store: Store, plain_keys: tuple[str, ...], refresh_seconds: float = 5.0):
        self._store = store
        self._plain_keys = {hash_key(key): key for key in plain_keys}
        self._plain = set(self._plain_keys)
        self._hashes: set[str] = set(self._plain)
        self._refresh_seconds = refresh_seconds
        self._loaded_at = float("-inf")

    async def accepts(self, key: str) -> bool:
        accepted = self.accepts_cached(key)
        if accepted is None:
            await self._reload()
            accepted = hash_key(key) in self._hashes
        return accepted

    def accepts_cached(self, key: str) -> bool | None:
        """`accepts` without waiting: None when the hashes must be re-read first.

        The hot path of every API request: no coroutine while the cache is fresh.
        """
        digest = hash_key(key)
        age = time.monotonic() - self._loaded_at
        if age > self._refresh_seconds or (digest not in self._hashes and age > 1.0):
            return None
        return digest in self._hashes

    async def accepts_hash(self, digest: str) -> bool:
        """Whether the key hashed as `digest` is still accepted (console sessions)."""
        if time.monotonic() - self._loaded_at > self._refresh_seconds:
            await self._reload()
        return digest in self._hashes

    def plain_key(self, digest: str) -> str | None:
        """The METERD_API_KEYS key hashed as `digest`, if it is one (not a stored key)."""
        return self._plain_keys.get(digest)

    async def _reload(self) -> None:
        self._loaded_at = time.monotonic()
        self._hashes = self._plain | await self._store.active_api_key_hashes()
