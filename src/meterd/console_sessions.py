"""Console sessions: opened with an API key, kept in the database by their hash.

The cookie holds a random token; the database holds its SHA-256 hash, so sessions
survive restarts and work across several meterd processes on one database. Each
session's CSRF token is derived from its secret (an HMAC), so forms need no
second stored value and a stolen database row forges neither.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from meterd.storage.base import ConsoleSessionRecord, Store

SESSION_TTL_MS = 12 * 3_600_000
TOKEN_PREFIX = "cs_"


def hash_session(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_token(session_token: str) -> str:
    """The CSRF token every form of this session carries."""
    return hmac.new(session_token.encode(), b"meterd console csrf", hashlib.sha256).hexdigest()


def csrf_matches(session_token: str, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(csrf_token(session_token), presented)


async def open_session(
    store: Store, *, key_hash: str, now_ms: int, ttl_ms: int = SESSION_TTL_MS
) -> tuple[str, ConsoleSessionRecord]:
    """A new session for the holder of the API key hashed as `key_hash`; returns its token."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    record = ConsoleSessionRecord(hash_session(token), key_hash, now_ms, now_ms + ttl_ms)
    await store.add_console_session(record, now_ms=now_ms)
    return token, record


async def find_session(store: Store, *, token: str, now_ms: int) -> ConsoleSessionRecord | None:
    """The live session behind `token`, or None (unknown, expired, or malformed)."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 100:
        return None
    record = await store.get_console_session(hash_session(token))
    if record is None or record.expires_ms <= now_ms:
        return None
    return record


async def close_session(store: Store, *, token: str) -> None:
    await store.delete_console_session(hash_session(token))
