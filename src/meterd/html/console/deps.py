"""What every console page needs, built once by the app."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import msgspec
from starlette.requests import Request
from starlette.responses import HTMLResponse

from meterd.config.model import Op, SystemConfig
from meterd.html.render import Renderer
from meterd.keyring import KeyRing
from meterd.periods import PeriodCalendar
from meterd.storage.base import Store


class SignedIn(msgspec.Struct, frozen=True):
    """The session behind a request (set by the console's auth middleware)."""

    token: str
    csrf: str
    key_hash: str  # the API key the session was opened with (its hash)


@dataclass(frozen=True)
class ConsoleDeps:
    store: Store
    config: SystemConfig
    calendars: dict[str, PeriodCalendar]
    ops: dict[str, Op]
    keyring: KeyRing
    renderer: Renderer
    on_redeliver: Callable[[], None]
    # Wakes the invoicing bridge after a resend (a no-op without one).
    on_resend: Callable[[], None] = lambda: None

    def page(
        self,
        request: Request,
        template: str,
        page: msgspec.Struct,
        *,
        section: str,
        status_code: int = 200,
    ) -> HTMLResponse:
        """A signed-in page: the template gets the nav section and the session's CSRF token."""
        signed_in: SignedIn = request.state.signed_in
        return self.renderer.response(
            template, page, status_code=status_code, section=section, csrf=signed_in.csrf
        )
