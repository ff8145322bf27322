"""GET /customers/{id}/entitlements and /customers/{id}/entitlements/{meter}."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from meterd.aggregation import calendars_for, ops_for
from meterd.config.model import SystemConfig
from meterd.entitlements import EntitlementsOut, entitlement, entitlements
from meterd.http.responses import JSONResponse
from meterd.storage.base import Store
from meterd.timeutil import now_ms


def entitlement_routes(config: SystemConfig, store: Store) -> list[Route]:
    calendars = calendars_for(config)
    ops = ops_for(config)

    async def one(request: Request) -> Response:
        answer = await entitlement(
            store,
            customer_id=request.path_params["id"],
            meter=request.path_params["meter"],
            config=config,
            calendars=calendars,
            ops=ops,
            now_ms=now_ms(),
        )
        return JSONResponse(answer)

    async def every(request: Request) -> Response:
        customer_id = request.path_params["id"]
        answers = await entitlements(
            store,
            customer_id=customer_id,
            config=config,
            calendars=calendars,
            ops=ops,
            now_ms=now_ms(),
        )
        return JSONResponse(EntitlementsOut(customer_id=customer_id, entitlements=answers))

    # Ahead of /customers/{id:path}, which would take these paths for a customer id.
    return [
        Route("/customers/{id:path}/entitlements/{meter}", one, methods=["GET"]),
        Route("/customers/{id:path}/entitlements", every, methods=["GET"]),
    ]
