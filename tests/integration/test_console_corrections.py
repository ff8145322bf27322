"""Void and amend from the console's customer page, on both backends."""

from __future__ import annotations

import re

import httpx
import msgspec
import pytest

from meterd.apikeys import display_prefix
from meterd.corrections import ENVIRONMENT_KEY_NAME
from meterd.ingest import NewEvent
from meterd.storage.base import EventQuery, KeyIdentity, Store
from meterd.timeutil import now_ms
from tests.conftest import API_KEY
from tests.integration.console_support import sign_in

PAGE = "/console/customers/cus_1?period=daily"


@pytest.fixture
async def browser(client: httpx.AsyncClient, store: Store) -> httpx.AsyncClient:
    """A signed-out client (no API key header) and three events for cus_1: 2, 3 and 5."""
    del client.headers["x-apikey"]
    ts = now_ms()
    await store.ingest(
        [
            NewEvent(f"e{i}", "api.calls", "cus_1", v, None, ts - i, ts)
            for i, v in enumerate((2, 3, 5))
        ]
    )
    return client


def api_calls(html: str) -> str:
    """The customer's live api.calls total as the usage table shows it."""
    found = re.search(r'<th scope="row">api.calls</th>\s*<td class="num">([^<]*)</td>', html)
    assert found is not None, "no api.calls row in the usage table"
    return found[1]


async def test_void_from_the_console_changes_the_live_total(
    browser: httpx.AsyncClient, store: Store
) -> None:
    csrf = await sign_in(browser)
    page = await browser.get(PAGE)
    assert api_calls(page.text) == "10"
    assert page.text.count(">Void</button>") == 3 and page.text.count(">Amend</button>") == 3
    response = await browser.post(
        "/console/events/e1/void",
        data={"csrfToken": csrf, "customerId": "cus_1", "reason": "double counted"},
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/console/customers/cus_1?voided=e1"
    page = await browser.get(response.headers["location"] + "&period=daily")
    assert api_calls(page.text) == "7"
    assert "Event e1 is voided." in page.text
    assert page.text.count(">voided</span>") == 1
    assert page.text.count(">Void</button>") == 2  # the voided event has no forms
    # The same record as the API's void: reason and the session's API key.
    detail = await store.get_event("e1")
    assert detail is not None and detail.voided is not None
    assert detail.voided.reason == "double counted"
    assert detail.voided.key == KeyIdentity(ENVIRONMENT_KEY_NAME, display_prefix(API_KEY))


async def test_amend_from_the_console_and_its_refusals(
    browser: httpx.AsyncClient, store: Store
) -> None:
    csrf = await sign_in(browser)
    form = {"csrfToken": csrf, "customerId": "cus_1", "reason": "meter misread"}
    response = await browser.post("/console/events/e2/amend", data={**form, "value": "50"})
    assert response.status_code == 303
    assert "amended=e2" in response.headers["location"]
    page = await browser.get(PAGE)
    assert api_calls(page.text) == "55"
    # Amending the voided original: 409, said on the page, total unchanged.
    response = await browser.post("/console/events/e2/amend", data={**form, "value": "6"})
    assert response.status_code == 409
    assert "is voided; it cannot be amended" in response.text
    assert api_calls(response.text) == "55"
    # A value that is not a number: 400 naming the field.
    response = await browser.post("/console/events/e0/amend", data={**form, "value": "lots"})
    assert response.status_code == 400
    assert "value: must be a number" in response.text
    response = await browser.post("/console/events/nope/void", data=form)
    assert response.status_code == 404
    assert "Event nope: no event has id" in response.text


async def test_void_without_a_reason_shows_the_error(
    browser: httpx.AsyncClient, store: Store
) -> None:
    csrf = await sign_in(browser)
    for reason in ({}, {"reason": "   "}):
        response = await browser.post(
            "/console/events/e1/void", data={"csrfToken": csrf, "customerId": "cus_1", **reason}
        )
        assert response.status_code == 400
        assert "reason: required" in response.text
        assert 'role="alert"' in response.text
        assert api_calls(response.text) == "10"
    detail = await store.get_event("e1")
    assert detail is not None and detail.voided is None


async def test_corrections_need_the_csrf_token(browser: httpx.AsyncClient, store: Store) -> None:
    csrf = await sign_in(browser)
    altered = csrf[:-1] + ("1" if csrf[-1] == "0" else "0")
    for path in ("/console/events/e1/void", "/console/events/e1/amend"):
        for token in ({}, {"csrfToken": altered}):
            data = {"customerId": "cus_1", "reason": "forged", "value": "9", **token}
            response = await browser.post(path, data=data)
            assert response.status_code == 403, (path, token)
    detail = await store.get_event("e1")
    assert detail is not None and detail.voided is None
    page = await browser.get(PAGE)
    assert api_calls(page.text) == "10"


def msgspec_json(raw: bytes | str) -> object:
    return msgspec.json.decode(raw)


def amend_keys(html: str) -> list[str]:
    return re.findall(r'name="idempotencyKey" value="([^"]+)"', html)


async def test_amend_form_offers_the_api_fields_and_a_fresh_idempotency_key(
    browser: httpx.AsyncClient, store: Store
) -> None:
    await sign_in(browser)
    first, second = (await browser.get(PAGE)).text, (await browser.get(PAGE)).text
    form = first[first.index('action="/console/events/e0/amend"') :]
    form = form[: form.index("</form>")]
    names = re.findall(r'<input[^>]* name="([^"]+)"', form)
    assert names == [
        "csrfToken",
        "idempotencyKey",
        "returnTo",
        "value",
        "timestamp",
        "metadata",
        "customerId",
        "reason",
    ]
    # One key per form, a new set on every render: a re-rendered form is a new request.
    assert len(set(amend_keys(first))) == 3
    assert not set(amend_keys(first)) & set(amend_keys(second))


async def test_amend_every_field_and_a_double_submit_amends_once(
    browser: httpx.AsyncClient, store: Store
) -> None:
    csrf = await sign_in(browser)
    [key, *_] = amend_keys((await browser.get(PAGE)).text)
    form = {
        "csrfToken": csrf,
        "idempotencyKey": key,
        "returnTo": "cus_1",
        "value": "40",
        "timestamp": "2026-01-02T03:04:05.678Z",
        "metadata": '{"region": "eu"}',
        "customerId": "cus_2",
        "reason": "wrong account",
    }
    first = await browser.post("/console/events/e1/amend", data=form)
    again = await browser.post("/console/events/e1/amend", data=form)
    assert first.status_code == again.status_code == 303
    assert first.headers["location"] == again.headers["location"]
    assert first.headers["location"].startswith("/console/customers/cus_1?amended=e1")
    replacement = first.headers["location"].rsplit("replacement=", 1)[1]
    detail = await store.get_event(replacement)
    assert detail is not None
    event = detail.event
    assert (event.customer_id, event.value, event.ts_ms) == ("cus_2", 40, 1767323045678)
    assert event.metadata is not None and msgspec_json(event.metadata) == {"region": "eu"}
    # Once: the original voided, one replacement, cus_1 lost 3 and cus_2 has only it.
    page = await browser.get(PAGE)
    assert api_calls(page.text) == "7"
    listed = await store.list_events(EventQuery(customer_id="cus_2", include_voided=True))
    assert [e.id for e in listed] == [replacement]
    # Empty fields keep their values; an amendment that changes nothing is refused.
    form = {"csrfToken": csrf, "returnTo": "cus_1", "reason": "no change", "value": ""}
    response = await browser.post("/console/events/e0/amend", data=form)
    assert response.status_code == 400 and 'role="alert"' in response.text
    response = await browser.post(
        "/console/events/e0/amend", data={**form, "metadata": "[not json"}
    )
    assert response.status_code == 400 and "metadata: must be a JSON object" in response.text
