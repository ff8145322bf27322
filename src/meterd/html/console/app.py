"""The console as a Starlette app of its own: session auth, CSRF, HTML errors, headers."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.types import ASGIApp

from meterd.html.console.auth import ConsoleAuth
from meterd.html.console.configuration import configuration_routes
from meterd.html.console.corrections import correction_routes
from meterd.html.console.customer import customer_routes
from meterd.html.console.customers import customers_routes
from meterd.html.console.deliveries import delivery_routes
from meterd.html.console.deps import ConsoleDeps
from meterd.html.console.invoices import invoice_routes
from meterd.html.console.overview import overview_routes
from meterd.html.console.sign_in import sign_in_routes
from meterd.html.errors import error_handlers
from meterd.html.security import SecurityHeaders

# Page modules, in navigation order. A feature adds its module here (and a nav entry).
PAGES = (
    sign_in_routes,
    overview_routes,
    customers_routes,
    customer_routes,
    correction_routes,
    invoice_routes,
    delivery_routes,
    configuration_routes,
)


def console_app(deps: ConsoleDeps) -> ASGIApp:
    """The console; its security headers wrap everything, server errors included."""
    routes = [route for pages in PAGES for route in pages(deps)]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(ConsoleAuth, deps=deps)],
        exception_handlers=error_handlers(
            deps.renderer, back_href="/console/", back_label="Back to the overview"
        ),
    )
    return SecurityHeaders(app, frame_ancestors=("'none'",))
