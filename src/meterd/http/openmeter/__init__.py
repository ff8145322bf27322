"""The OpenMeter-compatible API under /api/v1: its own app with Bearer auth and problem details.

Thin skins over `meterd.openmeter` (the mappings) and the services the native routes use.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount

from meterd.config.model import SystemConfig
from meterd.http.openmeter.auth import BearerKeyAuth
from meterd.http.openmeter.events import events_routes
from meterd.http.openmeter.meters import meters_routes
from meterd.http.openmeter.portal import PortalTokenAuth, portal_query_routes, token_routes
from meterd.http.openmeter.problems import EXCEPTION_HANDLERS
from meterd.keyring import KeyRing
from meterd.openmeter.portal import PortalTokens
from meterd.openmeter.query import QueryUsage
from meterd.settings import ServerSettings
from meterd.storage.base import Store

PREFIX = "/api/v1"


class _Mount(Mount):
    """A Mount whose path may hold any character: a %0A in a URL is still under /api/v1."""

    def __init__(self, path: str, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self.path_regex = re.compile(self.path_regex.pattern, re.DOTALL)


def openmeter_mount(
    settings: ServerSettings,
    config: SystemConfig,
    store: Store,
    *,
    keyring: KeyRing,
    loaded_ms: int,
    query_usage: QueryUsage | None = None,
    portal_tokens: PortalTokens | None = None,
) -> Mount:
    """`/api/v1`, answering OpenMeter's SDKs and CloudEvents producers.

    Without `query_usage` (the usage query service, §7) meter queries answer 501,
    without `portal_tokens` (the portal token service, §11) the portal routes do.
    """
    with_api_key = _Mount(
        "",
        routes=[
            *events_routes(config, store, max_body_bytes=settings.max_body_bytes),
            *meters_routes(config, store, query_usage=query_usage, loaded_ms=loaded_ms),
            *token_routes(config, tokens=portal_tokens),
        ],
        middleware=[Middleware(BearerKeyAuth, keyring=keyring)],
    )
    with_portal_token = _Mount(
        "/portal/meters",
        routes=portal_query_routes(config, store, query_usage=query_usage),
        middleware=[Middleware(PortalTokenAuth, tokens=portal_tokens)],
    )
    app = Starlette(routes=[with_portal_token, with_api_key], exception_handlers=EXCEPTION_HANDLERS)
    return _Mount(PREFIX, app=app)
