"""The consumer portal under /api/v1: token creation (API key) and its meter query (token).

Thin skins over the portal token service (§11, `MeterdPortalTokens`) and the usage
query service (§7); without one of them its routes answer 501.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from meterd.config.model import SystemConfig
from meterd.errors import InvalidRequest, NotAvailable, NotFound, PortalLinkInvalid, Unauthorized
from meterd.http.auth import presented_key
from meterd.http.body import decode_body
from meterd.http.openmeter.query import answer_query
from meterd.http.responses import JSONResponse
from meterd.openmeter.meters import find_meter
from meterd.openmeter.portal import (
    InvalidateIn,
    IssuedToken,
    PortalGrant,
    PortalTokenIn,
    PortalTokens,
    allows,
    portal_token_out,
    requested_meters,
)
from meterd.openmeter.query import QueryUsage
from meterd.portal_tokens import hash_token, issue_portal_token, portal_grant
from meterd.storage.base import Store
from meterd.timeutil import now_ms

NO_TOKEN_SERVICE = (
    "portal tokens need the portal token service of the customer portal (DESIGN §11),"
    " which this build of meterd does not have yet"
)
GRANT = "meterd.portal_grant"


def _tokens(tokens: PortalTokens | None) -> PortalTokens:
    if tokens is None:
        raise NotAvailable(NO_TOKEN_SERVICE)
    return tokens


def token_routes(config: SystemConfig, *, tokens: PortalTokens | None) -> list[Route]:
    """Creating and invalidating tokens; these need an API key."""

    async def create_token(request: Request) -> Response:
        body = decode_body(await request.body(), PortalTokenIn, _FIELD_RULES)
        meters = requested_meters(body, config.events)
        now = now_ms()
        issued = await _tokens(tokens).issue(customer_id=body.subject, meters=meters, now_ms=now)
        # OpenMeter's SDK takes 200 here, not 201.
        return JSONResponse(
            portal_token_out(issued.grant, config.events, now_ms=now, token=issued.token)
        )

    async def invalidate_tokens(request: Request) -> Response:
        body = decode_body(await request.body(), InvalidateIn, _FIELD_RULES)
        if not body.id and not body.subject:
            raise InvalidRequest("give the token's id or a subject", field="id")
        await _tokens(tokens).revoke(token_id=body.id, customer_id=body.subject, now_ms=now_ms())
        return Response(status_code=204)

    return [
        Route("/portal/tokens", create_token, methods=["POST"]),
        Route("/portal/tokens/invalidate", invalidate_tokens, methods=["POST"]),
    ]


def portal_query_routes(
    config: SystemConfig, store: Store, *, query_usage: QueryUsage | None
) -> list[Route]:
    """The meter query a portal token may make: its own customer, its allowed meters."""

    async def query_meter(request: Request) -> Response:
        grant: PortalGrant = request.scope[GRANT]
        slug = request.path_params["meterSlug"]
        found = find_meter(config.events, slug)
        if found is None or not allows(grant, found[0]):
            raise NotFound(f"no meter {slug!r} for this portal token")
        event_type, meter = found
        return await answer_query(
            request,
            store=store,
            query_usage=query_usage,
            event_type=event_type,
            meter=meter,
            subject=grant.customer_id,
        )

    return [Route("/{meterSlug}/query", query_meter, methods=["GET"])]


class PortalTokenAuth:
    """Admits a request with a live portal token as Bearer; its grant goes in the scope."""

    def __init__(self, app: ASGIApp, tokens: PortalTokens | None) -> None:
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            token = presented_key(scope)
            grant = None
            if token is not None:
                grant = await _tokens(self.tokens).grant(token, now_ms=now_ms())
            if grant is None:
                raise Unauthorized("A live portal token is required: `Authorization: Bearer`.")
            scope[GRANT] = grant
        await self.app(scope, receive, send)


# What each field of the portal token bodies must be, in the client's words.
_FIELD_RULES = {
    "subject": "must be a string (the customer id)",
    "allowedMeterSlugs": "must be an array of meter slugs (strings)",
    "id": "must be a string (a token id)",
}


class MeterdPortalTokens:
    """`PortalTokens` on meterd's portal tokens (meterd/portal_tokens.py, §11).

    A token's OpenMeter `id` is its SHA-256 hash, which is how meterd stores it.
    """

    def __init__(self, store: Store, config: SystemConfig) -> None:
        self._store = store
        self._meters = tuple(config.events)

    async def issue(
        self, *, customer_id: str, meters: tuple[str, ...] | None, now_ms: int
    ) -> IssuedToken:
        issued = await issue_portal_token(
            self._store,
            customer_id=customer_id,
            meters=meters,
            ttl_ms=None,
            known_meters=self._meters,
            now_ms=now_ms,
        )
        record = issued.record
        grant = PortalGrant(
            token_id=record.token_hash,
            customer_id=record.customer_id,
            meters=record.meters,
            created_ms=record.created_ms,
            expires_ms=record.expires_ms,
        )
        return IssuedToken(issued.token, grant)

    async def grant(self, token: str, *, now_ms: int) -> PortalGrant | None:
        try:
            found = await portal_grant(
                self._store, token=token, known_meters=self._meters, now_ms=now_ms
            )
        except PortalLinkInvalid:
            return None
        return PortalGrant(
            token_id=hash_token(token),
            customer_id=found.customer_id,
            meters=found.meters,
            created_ms=now_ms,
            expires_ms=found.expires_ms,
        )

    async def revoke(self, *, token_id: str | None, customer_id: str | None, now_ms: int) -> int:
        return await self._store.revoke_portal_tokens(
            now_ms=now_ms, token_hash=token_id, customer_id=customer_id
        )
