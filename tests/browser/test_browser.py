"""The console and the portal in headless Chromium (Debian's `chromium`, driven by Playwright).

One `meterd serve` subprocess and one browser for the whole module. Every request the
browser makes is recorded by route interception: anything not addressed to the server
is aborted and fails the module. Screenshots go to $METERD_SCREENSHOTS when set
(`docs/screenshots` refreshes the README's), else to a temporary directory.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Dialog,
    Page,
    Route,
    expect,
    sync_playwright,
)

from tests.acceptance.server import MeterdProcess

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
KEY = "mk_browser"
EVIL = '<img src=x onerror="alert(1)">'
CUSTOMERS = ("acme-corp", "globex", EVIL)
CONFIG = {
    "periods": ["hourly", "daily", "monthly"],
    "events": {"api.calls": {"op": "sum"}, "storage.bytes": {"op": "max"}},
    "webhooks": [
        {
            # Nothing listens on the discard port: every delivery fails, fast.
            "url": "http://127.0.0.1:9/hook",
            "secret": "whsec_c2VjcmV0LXRlc3Qta2V5",
            "periods": ["monthly"],
            "retrySchedule": ["1s"],
        }
    ],
}


class Server:
    def __init__(self, process: MeterdProcess) -> None:
        self.process = process
        self.url = process.url
        self.api = httpx.Client(base_url=process.url, headers={"x-apikey": KEY}, timeout=10)
        self.requests: list[str] = []
        self.foreign: list[str] = []

    def portal_token(self, customer_id: str, **extra: object) -> str:
        response = self.api.post("/portal/tokens", json={"customerId": customer_id, **extra})
        assert response.status_code == 201, response.text
        token: str = response.json()["token"]
        return token


def seed(api: httpx.Client) -> None:
    """A year of usage for three customers; the oldest months closed, so deliveries exist."""
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    events = []
    for index, customer in enumerate(CUSTOMERS):
        for month in range(12):
            at = now - timedelta(days=30 * month, hours=index)
            for n in range(3 + (month * 7 + index * 5) % 9):
                events.append(
                    {
                        "eventType": "api.calls",
                        "customerId": customer,
                        "value": 10 * (index + 1) + n,
                        "timestamp": (at - timedelta(minutes=n)).isoformat(),
                        "metadata": {"endpoint": f"/v1/items/{n}"},
                    }
                )
            events.append(
                {
                    "eventType": "storage.bytes",
                    "customerId": customer,
                    "value": 1_000_000 * (index + 1) + month * 50_000,
                    "timestamp": at.isoformat(),
                }
            )
    for start in range(0, len(events), 500):
        response = api.post("/usagebatch", json=events[start : start + 500])
        assert response.status_code == 201, response.text
    assert api.post("/aggregations/trigger").status_code == 202


def wait_for_failed_delivery(api: httpx.Client, seconds: float = 30.0) -> dict[str, object]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        failed = api.get("/deliveries", params={"status": "failed", "limit": 1}).json()
        if failed:
            found: dict[str, object] = failed[0]
            return found
        time.sleep(0.2)
    raise AssertionError("no delivery failed in time")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if shutil.which("chromium") is None and not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is missing: scripts/test installs it (apt-get)")
    workdir = tmp_path_factory.mktemp("browser")
    (workdir / "systemconfig.json").write_text(json.dumps(CONFIG))
    process = MeterdProcess(
        workdir,
        "--config",
        str(workdir / "systemconfig.json"),
        "--db",
        f"sqlite:///{workdir / 'meterd.db'}",
        "--close-interval",
        "1s",
        env={"METERD_API_KEYS": KEY},
    )
    with process:
        # A new user finds the console from the start-up line.
        assert f"Console: {process.url}/console\n" in process.read_output()
        server = Server(process)
        seed(server.api)
        yield server
        server.api.close()
    assert server.requests, "the browser made no request at all"
    assert server.foreign == [], f"requests to hosts other than the server: {server.foreign}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = os.environ.get("METERD_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def new_context(browser: Browser, server: Server, **options: object) -> BrowserContext:
    """A fresh browser profile whose every request is checked against the server's address."""
    context = browser.new_context(**options)  # type: ignore[arg-type]
    origin = urlsplit(server.url).netloc

    def check(route: Route) -> None:
        url = route.request.url
        server.requests.append(url)
        if urlsplit(url).netloc != origin:
            server.foreign.append(url)
            route.abort()
            return
        route.continue_()

    context.route("**/*", check)
    return context


def sign_in(page: Page, server: Server) -> None:
    page.goto(server.url + "/console")
    expect(page).to_have_url(server.url + "/console/sign-in")
    page.get_by_label("API key").fill(KEY)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()


def test_sign_in_browse_customers_and_sign_out(
    browser: Browser, server: Server, shots: Path
) -> None:
    context = new_context(browser, server, viewport={"width": 1100, "height": 900})
    page = context.new_page()
    dialogs: list[str] = []

    def record_dialog(dialog: Dialog) -> None:  # an injected script would open one
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", record_dialog)

    page.goto(server.url + "/console/sign-in")
    page.get_by_label("API key").fill("mk_wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not accepted")

    sign_in(page, server)
    expect(page.locator(".tile-value").first).to_have_text("3")
    expect(page.locator("figure.chart svg rect.bar")).to_have_count(24)
    page.screenshot(path=str(shots / "console-overview.png"))

    page.get_by_role("link", name="Customers", exact=True).click()
    expect(page.get_by_role("link", name=EVIL)).to_be_visible()  # shown as text, not run
    page.get_by_label("Customer id contains").fill("acme")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("link", name="acme-corp")).to_be_visible()
    expect(page.get_by_role("link", name="globex")).to_have_count(0)
    page.get_by_role("link", name="acme-corp").click()
    expect(page.get_by_role("heading", name="Customer acme-corp")).to_be_visible()
    expect(page.locator("figure.chart")).to_have_count(2)
    page.screenshot(path=str(shots / "console-customer.png"))

    # Events: filter by type, then page to older ones.
    page.get_by_label("Event type").select_option("storage.bytes")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("table.events tbody tr")
    expect(rows).to_have_count(12)
    for cell in rows.locator("td:nth-child(2)").all_text_contents():
        assert cell == "storage.bytes"
    page.get_by_label("Event type").select_option("")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(50)
    page.get_by_role("link", name="Older events").click()
    expect(rows.first).to_be_visible()
    assert rows.count() > 0

    # The hostile customer id renders as text on its own page too.
    page.goto(server.url + "/console/customers/" + quote(EVIL, safe=""))
    expect(page.locator("h1 .id")).to_have_text(EVIL)

    page.get_by_role("link", name="Configuration", exact=True).click()
    expect(page.locator("pre.config")).to_contain_text("********")
    expect(page.locator("pre.config")).not_to_contain_text("c2VjcmV0LXRlc3Qta2V5")

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(server.url + "/console/sign-in")
    page.goto(server.url + "/console/customers")
    expect(page).to_have_url(server.url + "/console/sign-in")
    assert dialogs == []
    context.close()


def test_redeliver_a_failed_delivery(browser: Browser, server: Server) -> None:
    failed = wait_for_failed_delivery(server.api)
    context = new_context(browser, server)
    page = context.new_page()
    sign_in(page, server)
    page.get_by_role("link", name="Deliveries", exact=True).click()
    page.get_by_label("Status").select_option("failed")
    page.get_by_role("button", name="Filter").click()
    button = page.get_by_role("button", name=f"Redeliver delivery {failed['id']}")
    expect(button).to_be_visible()
    attempts = int(str(failed["attempts"]))
    button.click()
    expect(page.get_by_role("status")).to_have_text(f"Delivery {failed['id']} is pending again.")
    after = server.api.get(f"/deliveries/{failed['id']}").json()
    assert after["status"] == "pending" or after["attempts"] > attempts
    context.close()


def test_portal_shows_one_customer_and_ends_with_expiry_or_revocation(
    browser: Browser, server: Server, shots: Path
) -> None:
    context = new_context(browser, server, viewport={"width": 1000, "height": 900})
    page = context.new_page()
    acme = server.portal_token("acme-corp", meters=["api.calls"])
    page.goto(f"{server.url}/portal/{acme}")
    expect(page.get_by_role("heading", name="Usage of acme-corp")).to_be_visible()
    text = page.locator("main").inner_text()
    assert "globex" not in text and "storage.bytes" not in text and "onerror" not in text
    expect(page.locator("figure.chart")).to_have_count(1)
    page.screenshot(path=str(shots / "portal.png"))
    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    csv_text = Path(download.value.path()).read_text()
    assert csv_text.startswith("customerId,periodKey")
    assert {line.split(",")[0] for line in csv_text.splitlines()[1:]} == {"acme-corp"}

    # Another customer's token shows that customer only.
    globex = server.portal_token("globex")
    page.goto(f"{server.url}/portal/{globex}")
    expect(page.get_by_role("heading", name="Usage of globex")).to_be_visible()
    assert "acme-corp" not in page.locator("main").inner_text()

    short = server.portal_token("globex", expiresIn="1s")
    time.sleep(1.2)
    response = page.goto(f"{server.url}/portal/{short}")
    assert response is not None and response.status == 401
    assert "globex" not in page.locator("main").inner_text()

    revoked = server.api.post("/portal/tokens/revoke", json={"customerId": "acme-corp"})
    assert revoked.json()["revoked"] >= 1
    response = page.goto(f"{server.url}/portal/{acme}")
    assert response is not None and response.status == 401
    expect(page.get_by_role("alert")).to_contain_text("expired or revoked")
    context.close()


def test_pages_fit_a_375px_phone_in_light_and_dark(browser: Browser, server: Server) -> None:
    portal = server.portal_token("acme-corp")
    for scheme in ("light", "dark"):
        context = new_context(
            browser, server, viewport={"width": 375, "height": 740}, color_scheme=scheme
        )
        page = context.new_page()
        sign_in(page, server)
        paths = [
            "/console/",
            "/console/customers",
            "/console/customers/acme-corp",
            "/console/customers/" + quote(EVIL, safe=""),
            "/console/deliveries",
            "/console/configuration",
            f"/portal/{portal}",
        ]
        backgrounds = set()
        for path in paths:
            page.goto(server.url + path)
            widths = page.evaluate(
                "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
            )
            assert widths[0] <= widths[1], (scheme, path, widths)
            backgrounds.add(page.evaluate("getComputedStyle(document.body).backgroundColor"))
        assert backgrounds == ({"rgb(255, 255, 255)"} if scheme == "light" else {"rgb(13, 17, 23)"})
        context.close()


def test_void_an_event_and_see_the_total_change(browser: Browser, server: Server) -> None:
    event_id = "ev-browser-void"
    now = datetime.now(UTC).isoformat()
    event = {"id": event_id, "eventType": "api.calls", "customerId": "globex", "value": 1000}
    response = server.api.post("/usagebatch", json=[{**event, "timestamp": now}])
    assert response.status_code == 201, response.text
    context = new_context(browser, server)
    page = context.new_page()
    sign_in(page, server)
    page.goto(server.url + "/console/customers/globex?period=monthly")
    total = page.locator("table.usage tr", has=page.locator("th", has_text="api.calls")).locator(
        "td"
    )
    before = total.first.inner_text()
    row = page.locator("table.events tbody tr", has_text=event_id)
    row.locator("form[action$='/void']").get_by_label("Reason").fill("sent twice")
    row.get_by_role("button", name=f"Void event {event_id}").click()
    expect(page.get_by_role("status")).to_have_text(f"Event {event_id} is voided.")
    expect(total.first).not_to_have_text(before)
    assert int(total.first.inner_text().replace(",", "")) == int(before.replace(",", "")) - 1000
    expect(row.locator(".status-voided")).to_have_text("voided")
    expect(row.get_by_role("button")).to_have_count(0)
    context.close()
