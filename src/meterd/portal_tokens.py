"""Customer portal tokens: issued for one customer (and some meters), hashed at rest.

A token is a bearer secret in the portal's URL. Only its SHA-256 hash is stored, so
the database alone cannot open anyone's portal. The console's `POST /portal/tokens`
and the OpenMeter-compatible `POST /api/v1/portal/tokens` both issue tokens here.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Collection, Sequence

import msgspec

from meterd.errors import InvalidRequest, PortalLinkInvalid
from meterd.storage.base import PortalTokenRecord, Store

TOKEN_PREFIX = "pt_"
DEFAULT_TTL_MS = 3_600_000  # 1h
MAX_TTL_MS = 30 * 86_400_000  # 30d
MAX_CUSTOMER_ID_LENGTH = 256


class IssuedToken(msgspec.Struct, frozen=True):
    """A new token: the secret (shown once) and what it grants."""

    token: str
    record: PortalTokenRecord


class PortalGrant(msgspec.Struct, frozen=True):
    """What a valid token lets its holder read: one customer, these meters, until then."""

    customer_id: str
    meters: tuple[str, ...]
    expires_ms: int


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def issue_portal_token(
    store: Store,
    *,
    customer_id: str,
    meters: Sequence[str] | None,
    ttl_ms: int | None,
    known_meters: Collection[str],
    now_ms: int,
) -> IssuedToken:
    """Create a token for `customer_id`, limited to `meters` (None: every meter)."""
    if not customer_id or len(customer_id) > MAX_CUSTOMER_ID_LENGTH:
        raise InvalidRequest(
            f"customerId: must be a non-empty string of at most {MAX_CUSTOMER_ID_LENGTH}"
            " characters",
            field="customerId",
        )
    if meters is not None:
        unknown = [meter for meter in meters if meter not in known_meters]
        if unknown:
            raise InvalidRequest(
                f"meters: {unknown[0]!r} is not a configured event type", field="meters"
            )
        if not meters:
            raise InvalidRequest("meters: name at least one event type", field="meters")
    ttl = DEFAULT_TTL_MS if ttl_ms is None else ttl_ms
    if not 0 < ttl <= MAX_TTL_MS:
        raise InvalidRequest("expiresIn: must be more than 0s and at most 30d", field="expiresIn")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    record = PortalTokenRecord(
        token_hash=hash_token(token),
        customer_id=customer_id,
        meters=None if meters is None else tuple(dict.fromkeys(meters)),
        created_ms=now_ms,
        expires_ms=now_ms + ttl,
    )
    await store.add_portal_token(record)
    return IssuedToken(token, record)


async def portal_grant(
    store: Store, *, token: str, known_meters: Sequence[str], now_ms: int
) -> PortalGrant:
    """What `token` grants now; PortalLinkInvalid if it is unknown, expired or revoked."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 100:
        raise PortalLinkInvalid()
    record = await store.get_portal_token(hash_token(token))
    if record is None or record.revoked_ms is not None or record.expires_ms <= now_ms:
        raise PortalLinkInvalid()
    meters = tuple(
        meter for meter in known_meters if record.meters is None or meter in record.meters
    )
    return PortalGrant(record.customer_id, meters, record.expires_ms)


async def revoke_portal_tokens(
    store: Store, *, token: str | None = None, customer_id: str | None = None, now_ms: int
) -> int:
    """Revoke one token, or every token of one customer; returns how many were revoked."""
    if (token is None) == (customer_id is None):
        raise InvalidRequest("send either token or customerId", field="token")
    return await store.revoke_portal_tokens(
        now_ms=now_ms,
        token_hash=None if token is None else hash_token(token),
        customer_id=customer_id,
    )
