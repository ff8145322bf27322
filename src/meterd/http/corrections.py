"""Corrections over HTTP: one event with its history, void, amend, and the revisions
of a record (DESIGN.md section 8). Thin: parse, call meterd.corrections, serialise."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from meterd import corrections
from meterd.aggregation import Totals
from meterd.config.model import SystemConfig
from meterd.errors import NotFound, PayloadTooLarge, Unauthorized
from meterd.http.auth import presented_key
from meterd.http.events import EventOut, event_out
from meterd.http.responses import JSONResponse
from meterd.meters.values import GroupValue
from meterd.storage.base import Correction, KeyIdentity, Store
from meterd.timeutil import format_ms, now_ms

# A reason and a few fields: anything larger is not a correction.
MAX_CORRECTION_BYTES = 64 * 1024


class KeyOut(msgspec.Struct):
    """The API key that made a correction: its name and display prefix, never the key."""

    name: str
    prefix: str


class EventDetailOut(EventOut, rename="camel"):
    """One event with its correction history."""

    voided_at: str | None = None
    void_reason: str | None = None
    voided_by: KeyOut | None = None
    amends: str | None = None
    amended_by: str | None = None
    amend_reason: str | None = None
    # The API key of the amendment that stored this event in place of `amends`.
    amend_key: KeyOut | None = None


class VoidOut(msgspec.Struct, rename="camel"):
    id: str
    status: str
    voided_at: str
    reason: str
    voided_by: KeyOut


class AmendOut(msgspec.Struct, rename="camel"):
    """The replacement event, the id it amends, and the correction's record."""

    id: str
    amends: str
    event_type: str
    customer_id: str
    value: float
    metadata: msgspec.Raw | None
    timestamp: str
    received_at: str
    status: str
    reason: str
    amended_by: KeyOut
    duplicate: bool


class RevisionOut(msgspec.Struct, rename="camel", omit_defaults=True):
    revision: int
    events: dict[str, int | float]
    event_counts: dict[str, int]
    event_count: int
    created_at: str
    groups: dict[str, list[GroupValue]] = {}


def _key_out(key: KeyIdentity) -> KeyOut:
    return KeyOut(key.name, key.prefix)


def void_out(correction: Correction) -> VoidOut:
    return VoidOut(
        id=correction.event_id,
        status="voided",
        voided_at=format_ms(correction.voided_ms),
        reason=correction.reason,
        voided_by=_key_out(correction.key),
    )


def corrections_routes(config: SystemConfig, store: Store) -> list[Route]:
    async def request_key(request: Request) -> KeyIdentity:
        key = presented_key(request.scope)
        if key is None:  # the middleware lets no such request through
            raise Unauthorized()
        return await corrections.key_identity(store, key)

    async def get_event(request: Request) -> Response:
        event_id = request.path_params["id"]
        detail = await store.get_event(event_id)
        if detail is None:
            raise NotFound(f"no event has id {event_id!r}")
        base = event_out(detail.event, config.timezone)
        voided, amends = detail.voided, detail.amends
        out = EventDetailOut(
            **msgspec.structs.asdict(base),
            voided_at=None if voided is None else format_ms(voided.voided_ms),
            void_reason=None if voided is None else voided.reason,
            voided_by=None if voided is None else _key_out(voided.key),
            amends=None if amends is None else amends.event_id,
            amended_by=None if voided is None else voided.replaced_by,
            amend_reason=None if amends is None else amends.reason,
            amend_key=None if amends is None else _key_out(amends.key),
        )
        return JSONResponse(out)

    async def void(request: Request) -> Response:
        correction = await corrections.void_event(
            store,
            event_id=request.path_params["id"],
            body=await _body(request),
            key=await request_key(request),
            now_ms=now_ms(),
        )
        return JSONResponse(void_out(correction))

    async def amend(request: Request) -> Response:
        amendment = await corrections.amend_event(
            store,
            event_id=request.path_params["id"],
            body=await _body(request),
            key=await request_key(request),
            idempotency_key=request.headers.get("idempotency-key") or None,
            now_ms=now_ms(),
            max_event_age_ms=config.max_event_age_ms,
        )
        event = amendment.replacement
        return JSONResponse(
            AmendOut(
                id=event.id,
                amends=amendment.original_id,
                event_type=event.event_type,
                customer_id=event.customer_id,
                value=event.value,
                metadata=None if event.metadata is None else msgspec.Raw(event.metadata),
                timestamp=format_ms(event.ts_ms),
                received_at=format_ms(event.received_ms),
                status="active" if event.voided_ms is None else "voided",
                reason=amendment.correction.reason,
                amended_by=_key_out(amendment.correction.key),
                duplicate=amendment.duplicate,
            ),
            status_code=201,
        )

    async def revisions(request: Request) -> Response:
        # An open record is a live view that was never sent: it has no revisions yet
        # (revision 1 is the record as its period closed), so the list is empty.
        aggregation_id = request.path_params["id"]
        if await store.get_aggregation(aggregation_id) is None:
            raise NotFound(f"no aggregation record has id {aggregation_id!r}")
        found = await store.list_revisions(aggregation_id)
        return JSONResponse([_revision_out(r.revision, r.totals, r.created_ms) for r in found])

    return [
        Route("/events/{id:path}/void", void, methods=["POST"]),
        Route("/events/{id:path}/amend", amend, methods=["POST"]),
        Route("/events/{id:path}", get_event, methods=["GET"]),
        Route("/aggregations/{id:path}/revisions", revisions, methods=["GET"]),
    ]


def _revision_out(revision: int, totals: Totals, created_ms: int) -> RevisionOut:
    return RevisionOut(
        revision=revision,
        events=totals.events,
        event_counts=totals.event_counts,
        event_count=totals.event_count,
        created_at=format_ms(created_ms),
        groups=totals.groups,
    )


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_CORRECTION_BYTES:
        raise PayloadTooLarge(maxBytes=MAX_CORRECTION_BYTES)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_CORRECTION_BYTES:
            raise PayloadTooLarge(maxBytes=MAX_CORRECTION_BYTES)
    return body
