"""OpenMeter's consumer portal tokens, mapped onto meterd's portal tokens (DESIGN §11).

`POST /api/v1/portal/tokens {"subject", "allowedMeterSlugs"?}` issues a token for one
customer and some meters (slugs become event types); the token then reads that
customer's usage through `GET /api/v1/portal/meters/{slug}/query`. `PortalTokens` is
what this layer expects of the portal token service: issue, look up, revoke; the
service keeps tokens hashed, expiring and revocable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import msgspec

from meterd.config.model import EventTypeConfig
from meterd.errors import InvalidRequest
from meterd.openmeter.meters import find_meter, meter_slug
from meterd.timeutil import format_ms


class PortalGrant(msgspec.Struct, frozen=True):
    """What a live portal token allows: one customer's usage of `meters` (None: all)."""

    token_id: str
    customer_id: str
    meters: tuple[str, ...] | None
    created_ms: int
    expires_ms: int


class IssuedToken(msgspec.Struct, frozen=True):
    token: str  # shown once, at creation
    grant: PortalGrant


class PortalTokens(Protocol):
    async def issue(
        self, *, customer_id: str, meters: tuple[str, ...] | None, now_ms: int
    ) -> IssuedToken: ...

    async def grant(self, token: str, *, now_ms: int) -> PortalGrant | None:
        """The token's grant; None for a token unknown, expired or revoked."""
        ...

    async def revoke(
        self, *, token_id: str | None, customer_id: str | None, now_ms: int
    ) -> int: ...


class PortalTokenIn(msgspec.Struct, rename="camel"):
    subject: str
    allowed_meter_slugs: list[str] | None = None


class InvalidateIn(msgspec.Struct):
    id: str | None = None
    subject: str | None = None


class PortalTokenOut(msgspec.Struct, rename="camel", omit_defaults=True):
    """OpenMeter's PortalToken."""

    id: str
    subject: str
    expires_at: str
    expired: bool
    created_at: str
    allowed_meter_slugs: list[str] | None = None
    token: str | None = None


def requested_meters(
    body: PortalTokenIn, events: Mapping[str, EventTypeConfig]
) -> tuple[str, ...] | None:
    """The event types behind `allowedMeterSlugs`; an unknown slug is an InvalidRequest."""
    if not body.subject:
        raise InvalidRequest("subject: must not be empty", field="subject")
    if body.allowed_meter_slugs is None:
        return None
    meters = []
    for slug in body.allowed_meter_slugs:
        found = find_meter(events, slug)
        if found is None:
            raise InvalidRequest(
                f"allowedMeterSlugs: no meter has the slug {slug!r}", field="allowedMeterSlugs"
            )
        meters.append(found[0])
    return tuple(dict.fromkeys(meters))


def portal_token_out(
    grant: PortalGrant,
    events: Mapping[str, EventTypeConfig],
    *,
    now_ms: int,
    token: str | None = None,
) -> PortalTokenOut:
    slugs = None
    if grant.meters is not None:
        slugs = [meter_slug(t, events[t]) if t in events else t for t in grant.meters]
    return PortalTokenOut(
        id=grant.token_id,
        subject=grant.customer_id,
        expires_at=format_ms(grant.expires_ms),
        expired=grant.expires_ms <= now_ms,
        created_at=format_ms(grant.created_ms),
        allowed_meter_slugs=slugs,
        token=token,
    )


def allows(grant: PortalGrant, event_type: str) -> bool:
    return grant.meters is None or event_type in grant.meters
