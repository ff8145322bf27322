"""The console in-process: sign-in, sessions, CSRF on every form, pages, escaping, headers."""

from __future__ import annotations

import hashlib
import re
from urllib.parse import quote

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from meterd.closing import PeriodCloser
from meterd.config.model import SystemConfig
from meterd.console_sessions import find_session, hash_session, open_session
from meterd.ingest import NewEvent
from meterd.storage.base import Store
from meterd.timeutil import now_ms, parse_iso_ms
from tests.conftest import API_KEY
from tests.integration.console_support import csrf_of, sign_in

PAGES = [
    "/console/",
    "/console/customers",
    "/console/customers/cus_1",
    "/console/deliveries",
    "/console/configuration",
]
EVIL = '<script>alert("x")</script>&"\'/?#'


@pytest.fixture
async def browser(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """The app's client without the API key header: the console must not need it."""
    del client.headers["x-apikey"]
    return client


async def test_pages_redirect_to_sign_in_without_a_session(browser: httpx.AsyncClient) -> None:
    for path in PAGES:
        response = await browser.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"] == "/console/sign-in"
    assert (await browser.get("/console")).headers["location"].endswith("/console/")


async def test_sign_in_sets_a_strict_http_only_expiring_cookie_stored_hashed(
    browser: httpx.AsyncClient, store: Store
) -> None:
    form = await browser.get("/console/sign-in")
    assert 'name="apiKey"' in form.text and ">Sign in</button>" in form.text
    response = await browser.post(
        "/console/sign-in", data={"apiKey": API_KEY, "csrfToken": csrf_of(form.text)}
    )
    assert response.status_code == 303
    cookie = next(
        value
        for value in response.headers.get_list("set-cookie")
        if value.startswith("meterd_session=")
    )
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "max-age", "path"} <= attributes
    assert "samesite=strict" in cookie.lower()
    token = cookie.split(";")[0].split("=", 1)[1]
    # Only the hash is stored: the token itself finds nothing, its hash finds the session.
    assert await store.get_console_session(token) is None
    assert await store.get_console_session(hash_session(token)) is not None
    page = await browser.get("/console/")
    assert page.status_code == 200
    assert ">Sign out</button>" in page.text


async def test_a_wrong_key_is_refused_and_opens_no_session(browser: httpx.AsyncClient) -> None:
    form = await browser.get("/console/sign-in")
    response = await browser.post(
        "/console/sign-in", data={"apiKey": "mk_wrong", "csrfToken": csrf_of(form.text)}
    )
    assert response.status_code == 401
    assert "not accepted" in response.text
    assert "meterd_session" not in response.headers.get("set-cookie", "")
    assert (await browser.get("/console/")).status_code == 303


async def test_sign_in_form_needs_its_csrf_cookie(browser: httpx.AsyncClient) -> None:
    """Login CSRF: a cross-site form post carries no sign-in cookie and is refused."""
    response = await browser.post(
        "/console/sign-in", data={"apiKey": API_KEY, "csrfToken": "guessed"}
    )
    assert response.status_code == 403
    await browser.get("/console/sign-in")
    response = await browser.post(
        "/console/sign-in", data={"apiKey": API_KEY, "csrfToken": "guessed"}
    )
    assert response.status_code == 403
    assert (await browser.get("/console/")).status_code == 303


async def test_every_form_post_needs_the_session_csrf_token(browser: httpx.AsyncClient) -> None:
    csrf = await sign_in(browser)
    posts = ["/console/sign-out", "/console/deliveries/1/redeliver"]
    for path in posts:
        altered = csrf[:-1] + ("1" if csrf[-1] == "0" else "0")
        for data in ({}, {"csrfToken": "x" * 64}, {"csrfToken": altered}):
            response = await browser.post(path, data=data)
            assert response.status_code == 403, (path, data)
    # The right token passes the check (the delivery does not exist: 404).
    response = await browser.post("/console/deliveries/1/redeliver", data={"csrfToken": csrf})
    assert response.status_code == 404
    # A route nobody declared yet is guarded too: CSRF runs before routing.
    assert (await browser.post("/console/anything", data={})).status_code == 403


async def test_csrf_token_differs_per_session(browser: httpx.AsyncClient) -> None:
    first = await sign_in(browser)
    browser.cookies.clear()
    second = await sign_in(browser)
    assert first != second


async def test_sign_out_ends_the_session_for_good(browser: httpx.AsyncClient) -> None:
    csrf = await sign_in(browser)
    token = browser.cookies.get("meterd_session", path="/console")
    assert token
    response = await browser.post("/console/sign-out", data={"csrfToken": csrf})
    assert response.status_code == 303
    # Replaying the old cookie no longer works.
    browser.cookies.set("meterd_session", token, path="/console")
    assert (await browser.get("/console/")).status_code == 303


async def test_expired_session_and_revoked_key_end_access(
    browser: httpx.AsyncClient, store: Store
) -> None:
    expired, _ = await open_session(
        store, key_hash=hashlib.sha256(API_KEY.encode()).hexdigest(), now_ms=0, ttl_ms=1000
    )
    assert await find_session(store, token=expired, now_ms=now_ms()) is None
    browser.cookies.set("meterd_session", expired, path="/console")
    assert (await browser.get("/console/")).status_code == 303
    # A session opened with a key that the server no longer accepts ends with the key.
    orphan, _ = await open_session(store, key_hash="0" * 64, now_ms=now_ms())
    browser.cookies.set("meterd_session", orphan, path="/console")
    assert (await browser.get("/console/")).status_code == 303


async def test_every_page_has_the_security_headers(browser: httpx.AsyncClient) -> None:
    await sign_in(browser)
    for path in [*PAGES, "/console/sign-in", "/console/customers/x?period=nope", "/console/zz"]:
        response = await browser.get(path)
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp, path
        assert "unsafe-inline" not in csp
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["content-type"].startswith("text/html")
        assert " style=" not in response.text and "<script" not in response.text, path


async def test_customer_ids_are_escaped_everywhere(
    browser: httpx.AsyncClient, client: httpx.AsyncClient, store: Store
) -> None:
    ts = now_ms()
    await store.ingest([NewEvent("e1", "api.calls", EVIL, 7, b'{"note": "<i>x</i>"}', ts, ts)])
    await sign_in(browser)
    customers = await browser.get("/console/customers")
    assert EVIL not in customers.text
    assert "&lt;script&gt;" in customers.text
    href = "/console/customers/" + quote(EVIL, safe="")
    assert href.replace("&", "&amp;") in customers.text
    page = await browser.get(href)
    assert page.status_code == 200
    assert "<script>" not in page.text and "<i>x</i>" not in page.text
    assert "&lt;i&gt;x&lt;/i&gt;" in page.text


async def test_customer_page_shows_usage_events_and_records(
    browser: httpx.AsyncClient, store: Store, config: SystemConfig
) -> None:
    day = parse_iso_ms("2025-01-15T10:00:00Z")
    now = now_ms()
    await store.ingest(
        [
            NewEvent("old", "api.calls", "cus_1", 5, None, day, day),
            *(NewEvent(f"n{i}", "api.calls", "cus_1", 2, None, now - i, now) for i in range(60)),
            NewEvent("other", "api.calls", "cus_2", 1000, None, now, now),
        ]
    )
    await PeriodCloser(store, config).close_completed(parse_iso_ms("2025-01-16T00:00:00Z"))
    await sign_in(browser)
    page = await browser.get("/console/customers/cus_1?period=daily")
    assert page.status_code == 200
    assert re.search(r"<th scope=\"row\">api.calls</th>\s*<td class=\"num\">120</td>", page.text)
    assert "1,000" not in page.text  # another customer's number never appears
    # 50 events per page, then a link to the older ones.
    assert page.text.count('<td class="id">n') == 50
    older = re.search(r'href="([^"]+)" rel="next">Older events', page.text)
    assert older is not None
    rest = await browser.get(older[1].replace("&amp;", "&"))
    assert rest.text.count('<td class="id">n') == 10
    # Filtering by time finds the January event and its closed daily record.
    january = await browser.get(
        "/console/customers/cus_1",
        params={"period": "daily", "from": "2025-01-15T00:00:00Z", "to": "2025-01-15T23:59:59Z"},
    )
    assert '<td class="id">old</td>' in january.text
    assert '<td class="id">n0</td>' not in january.text
    assert '<th scope="row">20250115</th>' in january.text
    bad = await browser.get("/console/customers/cus_1", params={"from": "yesterday"})
    assert bad.status_code == 400 and "from:" in bad.text


async def test_customers_search_and_overview_counts(
    browser: httpx.AsyncClient, store: Store
) -> None:
    now = now_ms()
    await store.ingest(
        [NewEvent(f"e{c}", "api.calls", c, 1, None, now, now) for c in ("acme", "beta", "acme-2")]
    )
    await sign_in(browser)
    found = await browser.get("/console/customers", params={"search": "acme"})
    assert ">acme</a>" in found.text and ">acme-2</a>" in found.text
    assert ">beta</a>" not in found.text
    overview = await browser.get("/console/")
    assert re.search(r'tile-value">3</span> customers', overview.text)
    assert re.search(r'tile-value">3</span> events in 24 h', overview.text)


async def test_configuration_page_hides_secrets(
    browser: httpx.AsyncClient, config: SystemConfig
) -> None:
    await sign_in(browser)
    page = await browser.get("/console/configuration")
    assert page.status_code == 200
    secret = config.webhooks[0].secrets[0]
    assert secret not in page.text
    assert "********" in page.text
    assert API_KEY not in page.text


async def test_the_api_key_does_not_open_console_pages(client: httpx.AsyncClient) -> None:
    """The console is reached by session only; an API key header is not a session."""
    assert (await client.get("/console/")).status_code == 303


def test_console_routes_are_in_page_modules(app: Starlette) -> None:
    """Every console path is served from the console mount, never by the API router."""
    api_paths = {route.path for route in app.routes if isinstance(route, Route)}
    assert not any(path.startswith("/console/") for path in api_paths)
