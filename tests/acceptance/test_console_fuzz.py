"""Fuzzing the console and portal routes of `meterd serve` over real HTTP: never a 5xx.

A signed-in client sends every console page arbitrary query parameters (known names
with hostile values, unknown names), arbitrary path segments (customer ids, delivery
ids, portal tokens) and arbitrary form posts, with and without the session's CSRF
token. Every answer must be below 500, and a page must never echo a raw `<` from
its input. Examples are derandomized: CI sends the same requests on every run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.acceptance.fuzz_support import DrainedMeterd

pytestmark = pytest.mark.slow

KEY = "mk_console_fuzz"
PAGES = (
    "/console/",
    "/console/customers",
    "/console/invoices",
    "/console/deliveries",
    "/console/configuration",
)
PARAMS = (
    "search",
    "after",
    "period",
    "eventType",
    "from",
    "to",
    "cursor",
    "status",
    "before",
    "customerId",
    "beforeStart",
    "beforeId",
)
MARK = "<zq"  # a tag opening that a page must escape wherever it echoes input
CSRF = re.compile(r'name="csrfToken" value="([^"]+)"')

text = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40
) | st.sampled_from(
    [
        "",
        "0",
        "-1",
        "9" * 30,
        "daily",
        "failed",
        "api.calls",
        "2025-01-15T00:00:00Z",
        "1.2",
        "%00",
        "../..",
        MARK + ">",
        "\x00",
        "a" * 300,
    ]
)
queries = st.dictionaries(st.sampled_from(PARAMS) | st.text(max_size=8), text, max_size=4)


class SignedInServer:
    def __init__(self, server: DrainedMeterd) -> None:
        self.server = server
        self.client = httpx.Client(base_url=server.url, timeout=10)
        form = self.client.get("/console/sign-in").text
        match = CSRF.search(form)
        assert match is not None
        response = self.client.post("/console/sign-in", data={"apiKey": KEY, "csrfToken": match[1]})
        assert response.status_code == 303
        page = CSRF.search(self.client.get("/console/").text)
        assert page is not None
        self.csrf = page[1]

    def check(self, response: httpx.Response) -> None:
        assert response.status_code < 500, (
            response.request.method,
            str(response.request.url),
            response.status_code,
            response.text[:500],
        )
        if response.headers.get("content-type", "").startswith("text/html"):
            assert MARK not in response.text, str(response.request.url)
            assert "content-security-policy" in response.headers


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignedInServer]:
    workdir: Path = tmp_path_factory.mktemp("console-fuzz")
    server = DrainedMeterd(
        workdir,
        env={
            "METERD_API_KEYS": KEY,
            "METERD_DATABASE_URL": f"sqlite:///{workdir / 'meterd.db'}",
            "METERD_CONFIG": "",
        },
    )
    with server:
        api = httpx.Client(base_url=server.url, headers={"x-apikey": KEY})
        batch = [
            {"eventType": "api.calls", "customerId": c, "value": 1}
            for c in ("acme", "a/b", MARK + ">", "ü")
        ]
        assert api.post("/usagebatch", json=batch).status_code == 201
        signed_in = SignedInServer(server)
        yield signed_in
        signed_in.client.close()
        api.close()
        assert "unexpected error on" not in server.read_output()


def fuzz(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


@fuzz(150)
@given(page=st.sampled_from(PAGES), query=queries)
def test_pages_with_any_query(console: SignedInServer, page: str, query: dict[str, str]) -> None:
    console.check(console.client.get(page, params=query))


@fuzz(150)
@given(segment=text, query=queries)
def test_customer_pages_with_any_id(
    console: SignedInServer, segment: str, query: dict[str, str]
) -> None:
    path = "/console/customers/" + quote(segment, safe="")
    console.check(console.client.get(path, params=query))


@fuzz(60)
@given(segment=text | st.just("inv_" + "0" * 24))
def test_invoice_pages_with_any_id(console: SignedInServer, segment: str) -> None:
    console.check(console.client.get("/console/invoices/" + quote(segment, safe="")))


@fuzz(100)
@given(
    path=st.sampled_from(
        [
            "/console/sign-out",
            "/console/deliveries/{}/redeliver",
            "/console/events/{}/void",
            "/console/events/{}/amend",
            "/console/{}",
        ]
    ),
    segment=text,
    fields=st.dictionaries(
        st.sampled_from(
            [
                "status",
                "apiKey",
                "x",
                "reason",
                "value",
                "customerId",
                "timestamp",
                "metadata",
                "idempotencyKey",
                "returnTo",
            ]
        ),
        text,
        max_size=4,
    ),
    with_csrf=st.booleans(),
)
def test_form_posts(
    console: SignedInServer, path: str, segment: str, fields: dict[str, str], with_csrf: bool
) -> None:
    if path == "/console/sign-out" and with_csrf:
        with_csrf = False  # keep the session for the other examples
    data = {**fields, **({"csrfToken": console.csrf} if with_csrf else {})}
    response = console.client.post(path.format(quote(segment, safe="")), data=data)
    console.check(response)
    if not with_csrf:
        assert response.status_code in (403, 404, 405, 413), response.status_code


@fuzz(100)
@given(token=text, suffix=st.sampled_from(["", "/usage.json", "/usage.csv", "/x"]))
def test_portal_with_any_token(console: SignedInServer, token: str, suffix: str) -> None:
    response = console.client.get("/portal/" + quote(token, safe="") + suffix)
    console.check(response)
    assert response.status_code in (401, 404, 405), response.status_code
