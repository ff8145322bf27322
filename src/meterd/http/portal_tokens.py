"""POST /portal/tokens and /portal/tokens/revoke: issuing customer portal links."""

from __future__ import annotations

from typing import TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from meterd.config.model import SystemConfig
from meterd.durations import parse_duration
from meterd.errors import InvalidRequest
from meterd.http.body import decode_body
from meterd.http.responses import JSONResponse
from meterd.portal_tokens import MAX_TTL_MS, issue_portal_token, revoke_portal_tokens
from meterd.storage.base import Store
from meterd.timeutil import format_ms, now_ms

MAX_BODY_BYTES = 65_536
T = TypeVar("T")
# What each field of the token bodies must be, in the client's words.
_FIELD_RULES = {
    "customerId": "must be a string (the customer id)",
    "meters": "must be an array of meter names (strings)",
    "expiresIn": 'must be a duration such as "1h" or "30d", or whole seconds',
    "token": "must be a string (a portal token)",
}


class TokenRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    customer_id: str
    meters: list[str] | None = None
    # A duration ("1h", "30d") or whole seconds.
    expires_in: str | int | None = None


class RevokeRequest(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    token: str | None = None
    customer_id: str | None = None


class TokenOut(msgspec.Struct, rename="camel"):
    token: str
    url: str
    expires_at: str


class RevokedOut(msgspec.Struct):
    revoked: int


def portal_token_routes(config: SystemConfig, store: Store) -> list[Route]:
    known_meters = list(config.events)

    async def create(request: Request) -> Response:
        body = await _decode(request, TokenRequest)
        issued = await issue_portal_token(
            store,
            customer_id=body.customer_id,
            meters=body.meters,
            ttl_ms=_ttl_ms(body.expires_in),
            known_meters=known_meters,
            now_ms=now_ms(),
        )
        url = str(request.base_url).rstrip("/") + "/portal/" + issued.token
        return JSONResponse(
            TokenOut(issued.token, url, format_ms(issued.record.expires_ms)), status_code=201
        )

    async def revoke(request: Request) -> Response:
        body = await _decode(request, RevokeRequest)
        revoked = await revoke_portal_tokens(
            store, token=body.token, customer_id=body.customer_id, now_ms=now_ms()
        )
        return JSONResponse(RevokedOut(revoked))

    return [
        Route("/portal/tokens", create, methods=["POST"]),
        Route("/portal/tokens/revoke", revoke, methods=["POST"]),
    ]


async def _decode(request: Request, kind: type[T]) -> T:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise InvalidRequest(f"the body exceeds {MAX_BODY_BYTES} bytes")
    return decode_body(body, kind, _FIELD_RULES)


def _ttl_ms(value: str | int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, int):
        if not 0 < value <= MAX_TTL_MS // 1000:
            raise InvalidRequest(
                "expiresIn: must be more than 0s and at most 30d", field="expiresIn"
            )
        return value * 1000
    try:
        return parse_duration(value)
    except ValueError as error:
        raise InvalidRequest(f"expiresIn: {error}", field="expiresIn") from None
