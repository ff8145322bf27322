"""The HTML surfaces as routes of the main app: /console, /portal/{token} and /static."""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.routing import BaseRoute, Mount, Route

from meterd.aggregation import calendars_for, ops_for
from meterd.config.model import SystemConfig
from meterd.html.console.app import console_app
from meterd.html.console.deps import ConsoleDeps
from meterd.html.portal.app import PortalDeps, portal_app
from meterd.html.render import Renderer
from meterd.html.static import StaticFiles
from meterd.keyring import KeyRing
from meterd.storage.base import Store


def html_routes(
    config: SystemConfig,
    store: Store,
    *,
    keyring: KeyRing,
    on_redeliver: Callable[[], None],
    on_resend: Callable[[], None] = lambda: None,
) -> list[BaseRoute]:
    """Mounts for the console and the portal (each with its own auth and errors), and assets.

    The portal's mount comes after the API's `POST /portal/tokens` routes in the app.
    """
    static = StaticFiles()
    renderer = Renderer(static)
    calendars = calendars_for(config)
    ops = ops_for(config)
    console = ConsoleDeps(
        store=store,
        config=config,
        calendars=calendars,
        ops=ops,
        keyring=keyring,
        renderer=renderer,
        on_redeliver=on_redeliver,
        on_resend=on_resend,
    )
    portal = PortalDeps(store=store, config=config, calendars=calendars, ops=ops, renderer=renderer)
    return [
        # The app turns off redirect_slashes (it would build the Location from the Host
        # header), so `/console` gets its own redirect, to a path with no host in it.
        Route("/console", _to_console_home, methods=["GET", "HEAD"]),
        Mount("/console", app=console_app(console)),
        Mount("/portal", app=portal_app(portal)),
        Mount("/static", routes=static.routes()),
    ]


async def _to_console_home(request: Request) -> RedirectResponse:
    return RedirectResponse("/console/", status_code=307)
