"""Bearer authentication for /api/v1, answered as problem details.

OpenMeter's clients send `Authorization: Bearer <token>`; meterd takes its API keys
there (and in `x-apikey`, as on the native routes).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from meterd.errors import Unauthorized
from meterd.http.auth import presented_key
from meterd.keyring import KeyRing

UNAUTHORIZED = "A valid API key is required: send it as `Authorization: Bearer <key>`."


class BearerKeyAuth:
    """Lets a request through only with an accepted API key; raises Unauthorized otherwise.

    It sits inside the /api/v1 app, so the mount's problem handler answers the error.
    """

    def __init__(self, app: ASGIApp, keyring: KeyRing) -> None:
        self.app = app
        self.keyring = keyring

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            key = presented_key(scope)
            if key is None or not await self.keyring.accepts(key):
                raise Unauthorized(UNAUTHORIZED)
        await self.app(scope, receive, send)
