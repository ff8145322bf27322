"""Helpers for the console's in-process tests: signing in and reading form tokens."""

from __future__ import annotations

import re

import httpx

from tests.conftest import API_KEY

_CSRF = re.compile(r'name="csrfToken" value="([^"]+)"')


def csrf_of(html: str) -> str:
    match = _CSRF.search(html)
    assert match is not None, "the page has no form with a CSRF token"
    return match[1]


async def sign_in(client: httpx.AsyncClient, key: str = API_KEY) -> str:
    """Sign in through the form; returns the session's CSRF token (read from a page)."""
    form = await client.get("/console/sign-in")
    response = await client.post(
        "/console/sign-in", data={"apiKey": key, "csrfToken": csrf_of(form.text)}
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/console/"
    overview = await client.get("/console/")
    assert overview.status_code == 200
    return csrf_of(overview.text)
