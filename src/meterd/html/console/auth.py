"""Console authentication: a session cookie on every page, a CSRF token on every form.

Runs before routing, so no page or form can be added without both checks. A POST
body is read here (it is a small form), its `csrfToken` checked, then replayed to
the route.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from starlette.requests import ClientDisconnect, HTTPConnection
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from meterd.console_sessions import csrf_matches, csrf_token, find_session
from meterd.errors import MeterdError, PayloadTooLarge
from meterd.html.console.deps import ConsoleDeps, SignedIn
from meterd.timeutil import now_ms

SESSION_COOKIE = "meterd_session"
SIGN_IN_COOKIE = "meterd_sign_in"
CSRF_FIELD = "csrfToken"
SIGN_IN_PATH = "/sign-in"
MAX_FORM_BYTES = 16_384


class ConsoleAuth:
    def __init__(self, app: ASGIApp, deps: ConsoleDeps) -> None:
        self.app = app
        self.deps = deps

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        connection = HTTPConnection(scope)
        path = scope["path"][len(scope.get("root_path", "")) :] or "/"
        method = scope["method"]
        presented = None
        if method == "POST":
            try:
                body = await read_form(receive, MAX_FORM_BYTES)
            except PayloadTooLarge as error:
                await PlainTextResponse(error.message, status_code=413)(scope, receive, send)
                return
            presented = _form_field(body, CSRF_FIELD)
            receive = _replay(body)
        if path == SIGN_IN_PATH:
            expected = connection.cookies.get(SIGN_IN_COOKIE)
            if method == "POST" and not (expected and presented == expected):
                await _forbidden(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        token = connection.cookies.get(SESSION_COOKIE, "")
        try:
            session = await find_session(self.deps.store, token=token, now_ms=now_ms())
            accepted = session is not None and await self.deps.keyring.accepts_hash(
                session.key_hash
            )
        except MeterdError as error:  # the database is down: say so, do not sign out
            unavailable = PlainTextResponse(
                error.message, status_code=503, headers={"Retry-After": "1"}
            )
            await unavailable(scope, receive, send)
            return
        if session is None or not accepted:
            response: Response = RedirectResponse("/console" + SIGN_IN_PATH, status_code=303)
            if token:
                response.delete_cookie(SESSION_COOKIE, path="/console")
            await response(scope, receive, send)
            return
        if method == "POST" and not csrf_matches(token, presented):
            await _forbidden(scope, receive, send)
            return
        scope.setdefault("state", {})["signed_in"] = SignedIn(
            token, csrf_token(token), session.key_hash
        )
        await self.app(scope, receive, send)


async def read_form(receive: Receive, limit: int) -> bytes:
    """The whole (small) body; PayloadTooLarge as soon as it passes `limit` bytes."""
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk: bytes = message.get("body", b"")
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"a console form is at most {limit} bytes")
        if not message.get("more_body", False):
            return body


def form_fields(body: bytes) -> dict[str, str]:
    """A urlencoded form's fields (the first value of each); {} if it is not one."""
    try:
        parsed = parse_qs(body.decode("utf-8"), max_num_fields=50)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {name: values[0] for name, values in parsed.items()}


def _form_field(body: bytes, name: str) -> str | None:
    return form_fields(body).get(name)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def _forbidden(scope: Scope, receive: Receive, send: Send) -> None:
    response = PlainTextResponse(
        "The form's CSRF token is missing or wrong: reload the page and try again.",
        status_code=403,
    )
    await response(scope, receive, send)
