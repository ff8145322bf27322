"""The OpenMeter-compatible API under /api/v1: its own app with Bearer auth and problem details.

Thin skins over `meterd.openmeter` (the mappings) and the services the native routes use.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount

from meterd.config.model import SystemConfig
from meterd.http.openmeter.auth import BearerKeyAuth
from meterd.http.openmeter.events import events_routes
from meterd.http.openmeter.meters import meters_routes
from meterd.http.openmeter.problems import EXCEPTION_HANDLERS
from meterd.keyring import KeyRing
from meterd.settings import ServerSettings
from meterd.storage.base import Store

PREFIX = "/api/v1"


def openmeter_mount(
    settings: ServerSettings,
    config: SystemConfig,
    store: Store,
    *,
    keyring: KeyRing,
    loaded_ms: int,
) -> Mount:
    """`/api/v1`, answering OpenMeter's SDKs and CloudEvents producers."""
    with_api_key = Mount(
        "",
        routes=[
            *events_routes(config, store, max_body_bytes=settings.max_body_bytes),
            *meters_routes(config, loaded_ms=loaded_ms),
        ],
        middleware=[Middleware(BearerKeyAuth, keyring=keyring)],
    )
    app = Starlette(routes=[with_api_key], exception_handlers=EXCEPTION_HANDLERS)
    return Mount(PREFIX, app=app)
