"""The few Stripe REST calls the bridge makes, with httpx and form encoding.

Calls (Stripe API reference): GET /v1/subscriptions/{id}, POST /v1/invoiceitems,
POST /v1/invoices, GET /v1/invoices?customer=. Every POST carries an Idempotency-Key
the caller derives from the meterd invoice record. The API key never appears in an
error message: Stripe's own texts are scrubbed of it before they are kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import msgspec

TIMEOUT_S = 30.0
ERROR_KEPT_CHARS = 500
REDACTED = "sk_***"


class StripeError(Exception):
    """A Stripe call failed: unreachable (status None) or answered with an error."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class StripeClient:
    def __init__(self, http: httpx.AsyncClient, *, api_base: str, api_key: str) -> None:
        self.http = http
        self.api_base = api_base.rstrip("/")
        self._api_key = api_key

    async def post(
        self, path: str, form: Mapping[str, str], *, idempotency_key: str
    ) -> dict[str, Any]:
        return await self._call("POST", path, form=form, idempotency_key=idempotency_key)

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        return await self._call("GET", path, params=params)

    async def _call(
        self,
        method: str,
        path: str,
        *,
        form: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self._api_key}"}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        try:
            response = await self.http.request(
                method,
                self.api_base + path,
                data=dict(form) if form is not None else None,
                params=dict(params) if params is not None else None,
                headers=headers,
                timeout=TIMEOUT_S,
            )
        except httpx.HTTPError as error:
            raise StripeError(
                self.scrub(f"{method} {path}: Stripe unreachable: {error!r}")
            ) from None
        try:
            body = msgspec.json.decode(response.content)
        except msgspec.DecodeError:
            body = None
        if response.status_code >= 300 or not isinstance(body, dict):
            message = _error_message(body) or response.text[:ERROR_KEPT_CHARS]
            raise StripeError(
                self.scrub(f"{method} {path}: Stripe answered {response.status_code}: {message}"),
                status=response.status_code,
            )
        return body

    def scrub(self, text: str) -> str:
        """`text` without the API key in it."""
        return text.replace(self._api_key, REDACTED) if self._api_key else text


def _error_message(body: object) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        message = body["error"].get("message")
        return str(message)[:ERROR_KEPT_CHARS] if message is not None else None
    return None
