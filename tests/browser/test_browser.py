"""The console and the portal in headless Chromium (Debian's `chromium`, driven by Playwright).

One `meterd serve` subprocess and one browser for the whole module. Every request the
browser makes is recorded by route interception: anything not addressed to the server
is aborted and fails the module. Screenshots go to $METERD_SCREENSHOTS when set
(`docs/screenshots` refreshes the README's), else to a temporary directory.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
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

from meterd.closing import PeriodCloser
from meterd.config.loader import parse_config
from meterd.ingest import NewEvent
from meterd.periods import PeriodCalendar
from meterd.storage.base import CustomerRecord, PlanAssignment
from meterd.storage.sqlite.store import SQLiteStore
from meterd.timeutil import now_ms
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
# On the plan since before last month, whose invoice exists when the server starts.
PLANNED = "initech"
CONFIG: dict[str, object] = {
    "periods": ["hourly", "daily", "monthly"],
    "events": {
        "api.calls": {"op": "sum"},
        "storage.bytes": {"op": "max"},
        "llm.tokens": {"op": "sum", "groupBy": ["model"]},
    },
    "plans": {
        "pro": {
            "currency": "usd",
            "period": "monthly",
            "baseFee": "49.00",
            "charges": {
                "api.calls": {
                    "model": "graduated",
                    "tiers": [
                        {"upTo": 100, "unitPrice": "0"},
                        {"upTo": None, "unitPrice": "0.05"},
                    ],
                },
                "llm.tokens": {
                    "model": "package",
                    "packageSize": 1000,
                    "packagePrice": "0.20",
                    "byGroup": {"model": {"large": {"packagePrice": "1.00"}}},
                },
            },
            "allowances": {"api.calls": 500},
        }
    },
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


def prepare_invoice(db: Path) -> None:
    """Before the server starts: PLANNED on plan pro, last month's usage, and that month
    closed in-process by meterd's own closer (monthly only), which writes its invoice."""

    async def prepare() -> None:
        store = SQLiteStore(str(db))
        await store.open()
        try:
            now = now_ms()
            monthly = {key: value for key, value in CONFIG.items() if key != "webhooks"}
            monthly["periods"] = ["monthly"]
            config = parse_config(json.dumps(monthly).encode(), "<browser>")
            calendar = PeriodCalendar(config.periods[0], config.timezone)
            last_month = calendar.previous_bounds(calendar.bounds_at(now))
            await store.put_customer(
                CustomerRecord(PLANNED, None, None, now, now),
                assignment=PlanAssignment("pro", last_month.start_ms),
            )
            at = last_month.start_ms + 86_400_000
            models = [b'{"model": "large"}', b'{"model": "small"}', None]
            await store.ingest(
                [
                    NewEvent(f"prepared-{n}", "api.calls", PLANNED, 40, None, at + n, now)
                    for n in range(5)
                ]
                + [
                    NewEvent(
                        f"prepared-t{n}", "llm.tokens", PLANNED, 1500, models[n % 3], at + n, now
                    )
                    for n in range(6)
                ]
            )
            await PeriodCloser(store, config).close_completed(now)
        finally:
            await store.close()

    # Playwright's sync API holds an event loop in this thread: run ours in another.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, prepare()).result()


def seed_planned(api: httpx.Client) -> None:
    """This month's usage of PLANNED: groups (one named like an attack) and a limit."""
    now = datetime.now(UTC)
    events = [
        {
            "eventType": "api.calls",
            "customerId": PLANNED,
            "value": 60,
            "id": f"initech-{n}",
            "timestamp": (now - timedelta(minutes=n)).isoformat(),
        }
        for n in range(7)
    ] + [
        {
            "eventType": "llm.tokens",
            "customerId": PLANNED,
            "value": 1200 * (n + 1),
            "metadata": {"model": model},
            "timestamp": (now - timedelta(minutes=n)).isoformat(),
        }
        for n, model in enumerate(["large", "small", "small", EVIL, "large"])
    ]
    response = api.post("/usagebatch", json=events)
    assert response.status_code == 201, response.text


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
    prepare_invoice(workdir / "meterd.db")
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
        seed_planned(server.api)
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


def assert_no_script_or_inline_style(page: Page) -> None:
    """What the CSP forbids is not in the page at all (and an injected id ran nothing)."""
    assert page.locator("script").count() == 0, page.url
    assert page.locator("[style]").count() == 0, page.url
    assert page.locator("img").count() == 0, page.url  # EVIL stayed text


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
    expect(page.locator(".tile-value").first).to_have_text(str(len(CUSTOMERS) + 1))
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
    expect(page.locator("figure.chart")).to_have_count(3)

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

    # A customer on a plan: groups, the invoice preview, last month's invoice.
    page.goto(server.url + "/console/customers/" + PLANNED)
    groups = page.locator("table.groups tbody tr")
    expect(groups).to_have_count(3)  # sorted by model: EVIL ("<img ...") first
    expect(groups.nth(0).locator("td").first).to_have_text(EVIL)
    expect(groups.filter(has_text="large").locator("td.num").first).to_have_text("7,200")
    preview = page.locator("table.invoice-lines")
    expect(preview.locator("caption")).to_contain_text("Preview: plan pro")
    expect(preview.locator("td.total")).to_have_text(
        server.api.get(f"/customers/{PLANNED}/invoice-preview").json()["total"] + " USD"
    )
    [invoice] = server.api.get("/invoices", params={"customerId": PLANNED}).json()
    listed = page.locator("table.invoices tbody tr")
    expect(listed).to_have_count(1)
    expect(listed.locator(".status")).to_have_text("draft")
    assert_no_script_or_inline_style(page)
    page.set_viewport_size({"width": 1100, "height": 1300})
    page.screenshot(path=str(shots / "console-customer.png"))
    page.locator("table.events details.amend summary").first.click()
    section = page.locator("section[aria-labelledby='events-heading']")
    section.evaluate("element => element.scrollIntoView()")
    events = section.bounding_box()  # now at the top of the viewport
    assert events is not None
    page.screenshot(
        path=str(shots / "console-corrections.png"),
        clip={**events, "height": min(events["height"], 700)},
    )
    page.set_viewport_size({"width": 1100, "height": 900})
    listed.get_by_role("link", name=invoice["id"]).click()
    expect(page.get_by_role("heading", name=f"Invoice {invoice['id']}")).to_be_visible()
    expect(page.locator("td.total")).to_have_text(f"{invoice['total']} USD")
    amounts = page.locator("table.invoice-lines tbody td.num").all_text_contents()
    assert amounts == [f"{line['amount']} USD" for line in invoice["lines"]]
    page.screenshot(path=str(shots / "console-invoice.png"))
    page.get_by_role("link", name="Invoices", exact=True).click()
    page.get_by_label("Status").select_option("sent")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("table.invoices tbody tr")).to_have_text(
        "No invoices yet: one is written when a customer's plan period closes."
    )

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
    expect(page.get_by_role("heading", name="Invoice preview")).to_have_count(0)  # no plan
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

    # A customer on a plan: limit bars, groups, the invoice preview.
    planned = server.portal_token(PLANNED)
    page.goto(f"{server.url}/portal/{planned}")
    limit = page.get_by_role("meter", name="api.calls (monthly)")
    expect(limit).to_have_attribute("value", "420")
    expect(limit).to_have_attribute("max", "500")
    expect(page.locator("table.groups tbody tr")).to_have_count(3)
    expect(page.locator("table.groups")).to_contain_text(EVIL)
    total = server.api.get(f"/customers/{PLANNED}/invoice-preview").json()["total"]
    expect(page.locator("table.invoice-lines td.total")).to_have_text(f"{total} USD")
    assert_no_script_or_inline_style(page)
    page.screenshot(path=str(shots / "portal.png"), full_page=True)

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
    portal = server.portal_token(PLANNED)
    [invoice] = server.api.get("/invoices", params={"customerId": PLANNED}).json()
    invoice_id = invoice["id"]
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
            "/console/customers/" + PLANNED,
            "/console/invoices",
            "/console/invoices/" + invoice_id,
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
            assert_no_script_or_inline_style(page)
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


def test_amend_every_field_and_a_double_submit_amends_once(
    browser: Browser, server: Server
) -> None:
    event_id = "ev-browser-amend"
    now = datetime.now(UTC).replace(microsecond=0)
    event = {"id": event_id, "eventType": "api.calls", "customerId": "globex", "value": 100}
    response = server.api.post("/usagebatch", json=[{**event, "timestamp": now.isoformat()}])
    assert response.status_code == 201, response.text
    before = server.api.get("/customers/globex/usage", params={"period": "monthly"}).json()
    context = new_context(browser, server)
    page = context.new_page()
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    sign_in(page, server)
    page.goto(server.url + "/console/customers/globex?period=monthly")
    row = page.locator("table.events tbody tr", has_text=event_id)
    row.locator("summary", has_text="Amend").click()
    form = row.locator("form[action$='/amend']")
    moved = now - timedelta(seconds=1)
    form.get_by_label("Value").fill("250")
    form.get_by_label("Timestamp").fill(moved.isoformat())
    form.get_by_label("Metadata").fill('{"endpoint": "/v1/fixed"}')
    form.get_by_label("Customer id").fill("globex")
    form.get_by_label("Reason").fill("meter misread")
    fields = form.evaluate("f => Object.fromEntries(new FormData(f))")
    assert fields["idempotencyKey"] and fields["csrfToken"]
    action = server.url + str(form.get_attribute("action"))
    # A double click submits the same rendered form twice (the second may cancel the
    # first navigation, not its request); then the same form posted once more.
    form.get_by_role("button", name=f"Amend event {event_id}").dblclick()
    expect(page.get_by_role("status")).to_contain_text(f"Event {event_id} is amended")
    again = context.request.post(action, form=fields, max_redirects=0)
    assert again.status == 303, again.text()
    assert posts.count(action) >= 1
    detail = server.api.get(f"/events/{event_id}").json()
    assert detail["status"] == "voided"
    replacement = server.api.get(f"/events/{detail['amendedBy']}").json()
    assert (replacement["value"], replacement["metadata"]) == (250, {"endpoint": "/v1/fixed"})
    assert replacement["amends"] == event_id and replacement["customerId"] == "globex"
    assert replacement["timestamp"].startswith(moved.strftime("%Y-%m-%dT%H:%M:%S"))
    assert again.headers["location"].endswith("replacement=" + detail["amendedBy"])
    after = server.api.get("/customers/globex/usage", params={"period": "monthly"}).json()
    # Amended once: +150 on the total and one event more counted, not two.
    assert after["events"]["api.calls"] == before["events"]["api.calls"] + 150
    assert after["eventCounts"]["api.calls"] == before["eventCounts"]["api.calls"]
    context.close()
