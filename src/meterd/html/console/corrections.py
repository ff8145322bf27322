"""Void and amend an event from the customer page (DESIGN.md section 8 and 11).

The forms post here; the same service as `POST /events/{id}/void|amend` does the work,
with the session's API key recorded as the one that made the correction. Success
redirects back to the customer page with a status line; a refused correction shows
the customer page again with the reason, in the status the API would answer.

The amend form carries the API's fields (`value`, `timestamp`, `metadata`,
`customerId`, `reason`; an empty one keeps the event's value) and an Idempotency-Key
made when the page was rendered, so submitting the same form twice amends once.
"""

from __future__ import annotations

import math
import re
from urllib.parse import urlencode

import msgspec
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from meterd import corrections
from meterd.errors import InvalidRequest, MeterdError, Unauthorized, status_code_of
from meterd.html.console.auth import form_fields
from meterd.html.console.customer import customer_href, customer_page
from meterd.html.console.deps import ConsoleDeps, SignedIn
from meterd.storage.base import KeyIdentity
from meterd.timeutil import now_ms

_DIGITS = re.compile(r"[0-9]{1,18}")


def correction_routes(deps: ConsoleDeps) -> list[Route]:
    async def session_key(request: Request) -> KeyIdentity:
        """The API key the session was opened with, named as the API names it."""
        signed_in: SignedIn = request.state.signed_in
        plain = deps.keyring.plain_key(signed_in.key_hash)
        if plain is not None:
            return await corrections.key_identity(deps.store, plain)
        record = await deps.store.api_key_by_hash(signed_in.key_hash)
        if record is None:  # the middleware lets no such session through
            raise Unauthorized()
        return KeyIdentity(record.name, record.prefix)

    async def void(request: Request) -> Response:
        return await correct(request, "void")

    async def amend(request: Request) -> Response:
        return await correct(request, "amend")

    async def correct(request: Request, action: str) -> Response:
        event_id = request.path_params["id"]
        fields = form_fields(await request.body())
        # The page to go back to: the amend form names it apart from its customerId field.
        customer_id = fields.get("returnTo") or fields.get("customerId", "")
        try:
            if action == "void":
                await corrections.void_event(
                    deps.store,
                    event_id=event_id,
                    body=msgspec.json.encode({"reason": fields.get("reason")}),
                    key=await session_key(request),
                    now_ms=now_ms(),
                )
                query = {"voided": event_id}
            else:
                amendment = await corrections.amend_event(
                    deps.store,
                    event_id=event_id,
                    body=_amend_body(fields),
                    key=await session_key(request),
                    idempotency_key=fields.get("idempotencyKey") or None,
                    now_ms=now_ms(),
                    max_event_age_ms=deps.config.max_event_age_ms,
                )
                query = {"amended": event_id, "replacement": amendment.replacement.id}
        except MeterdError as error:
            if not customer_id or status_code_of(error) >= 500:
                raise
            page = await customer_page(
                deps, customer_id, QueryParams(), error=f"Event {event_id}: {error.message}"
            )
            return deps.page(
                request,
                "customer.html",
                page,
                section="Customers",
                status_code=status_code_of(error),
            )
        if not customer_id:
            return RedirectResponse("/console/customers", status_code=303)
        href = customer_href(customer_id) + "?" + urlencode(query)
        return RedirectResponse(href, status_code=303)

    return [
        Route("/events/{id:path}/void", void, methods=["POST"]),
        Route("/events/{id:path}/amend", amend, methods=["POST"]),
    ]


def _amend_body(fields: dict[str, str]) -> bytes:
    """The API's amend body from the form: the reason and each field that was filled in
    (the service refuses an amendment that changes nothing)."""
    body: dict[str, object] = {"reason": fields.get("reason")}
    value = fields.get("value", "").strip()
    if value:
        try:
            number = float(value)
        except ValueError:
            raise InvalidRequest("value: must be a number", field="value") from None
        if not math.isfinite(number):
            raise InvalidRequest("value: must be a finite number", field="value")
        body["value"] = number
    timestamp = fields.get("timestamp", "").strip()
    if timestamp:
        body["timestamp"] = int(timestamp) if _DIGITS.fullmatch(timestamp) else timestamp
    metadata = fields.get("metadata", "").strip()
    if metadata:
        try:
            body["metadata"] = msgspec.Raw(msgspec.json.encode(msgspec.json.decode(metadata)))
        except msgspec.DecodeError:
            raise InvalidRequest("metadata: must be a JSON object", field="metadata") from None
    customer_id = fields.get("customerId", "").strip()
    if customer_id:
        body["customerId"] = customer_id
    return msgspec.json.encode(body)
