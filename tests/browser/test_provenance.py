"""Where each price comes from and how old it is, in a real browser (issue 13, points 2 and 3).

Simulated prices say so on every page (a persistent notice, the badge), driven by the quotes'
source: a page of real-provider prices (the fake Twelve Data server) shows no notice. Every price
carries its source tag and, once not fresh, its age, at desktop and phone widths alike. A reconnect
on a healthy feed toasts no "delayed" / "live again" pair; a real delay toasts once.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, ViewportSize, WebSocketRoute, expect

from tests.browser.conftest import SERVER_ENV, screenshot
from tests.fakes.provider import KEYS, FakeProviders, fake, fake_server
from tests.support import AppServer

__all__ = ["fake", "fake_server"]

BADGE = "#conn .badge-label"
NOTICE = "#unreal-notice"
PHONE: ViewportSize = {"width": 390, "height": 844}
ROWS = "table[data-live] tr.quote"
# Every toast the page shows, kept (toasts remove themselves after 6 s). Installed before the
# page's own script runs, so it sees the first toast too.
TOAST_LOG = """
window.__toasts = [];
new MutationObserver((records) => {
  for (const r of records) for (const n of r.addedNodes) {
    if (n.classList && n.classList.contains("toast")) window.__toasts.push(n.textContent);
  }
}).observe(document, { childList: true, subtree: true });
"""
TOASTS_JS = """() => window.__toasts"""


def data_toasts(page: Page) -> list[str]:
    texts: list[str] = page.evaluate(TOASTS_JS)
    return [t for t in texts if t.startswith("Prices are")]


@pytest.mark.parametrize("viewport", [None, PHONE], ids=["desktop", "phone"])
def test_simulated_prices_say_so_on_every_page(
    page: Page, server: AppServer, viewport: ViewportSize | None
) -> None:
    if viewport:
        page.set_viewport_size(viewport)
    for path in ("/", "/market", "/stock/TCS"):
        page.goto(server.base + path)
        notice = page.locator(NOTICE)
        # In the server's HTML, before any script, and kept by the script.
        expect(notice).to_be_visible()
        expect(notice).to_have_text(re.compile("Simulated prices: not market data"))
        expect(notice).to_have_attribute("role", "status")
        expect(page.locator(BADGE)).to_have_text("Live · simulated")
        expect(page.locator("#conn")).to_have_attribute("aria-label", re.compile("simulated"))
        # Every priced row carries its source tag, visible even where the Source column is not.
        rows = page.locator(f"{ROWS}[data-source='simulated']")
        expect(rows.first).to_be_visible()
        for i in range(rows.count()):
            tag = rows.nth(i).locator('[data-col="symbol"] abbr.src')
            expect(tag).to_be_visible()
            expect(tag).to_have_text("SIM")
            expect(tag).to_have_attribute("title", re.compile("^Source: Simulated"))
        if path == "/market":
            for movers in ("#gainers", "#losers"):
                tags = page.locator(f"{movers} tr[data-symbol] abbr.src")
                for i in range(tags.count()):
                    expect(tags.nth(i)).to_be_visible()
                    expect(tags.nth(i)).to_have_text("SIM")
        name = path.strip("/").replace("/", "-") or "dashboard"
        screenshot(page, f"simulated-{name}-{'phone' if viewport else 'desktop'}")


def test_an_old_price_shows_its_age_in_its_row_at_phone_width(
    page: Page, server: AppServer
) -> None:
    page.set_viewport_size(PHONE)
    page.goto(server.base + "/market")
    expect(page.locator(BADGE)).to_have_text("Live · simulated")
    symbol = page.locator("table[data-board='equities'] tr.quote").first.get_attribute(
        "data-symbol"
    )
    row = page.locator(f'{ROWS}[data-symbol="{symbol}"]')
    age = row.locator('[data-col="symbol"] .age')
    expect(age).to_be_hidden()  # fresh: no age shown
    # The same row, its last trade three hours old, with a version far ahead of the feed's (so
    # nothing newer replaces it during the test): the server keeps confirming it current, so it
    # shows its age, without the stale marker (a quiet or closed market looks like this).
    page.evaluate(
        """(symbol) => {
        const row = document.querySelector(`tr.quote[data-symbol="${symbol}"]`).cloneNode(true);
        row.dataset.seq = "999999999";
        row.dataset.time = String(Date.now() - 3 * 3600 * 1000 - 5000);
        row.setAttribute("hx-swap-oob", "true");
        window.stocktracker.ingest(row.outerHTML);
        window.stocktracker.flush();
    }""",
        symbol,
    )
    expect(age).to_be_visible()
    expect(age).to_have_text("3 h")
    expect(age).to_have_attribute("title", re.compile("confirmed current$"))
    expect(row).not_to_have_class(re.compile(r"\bstale\b"))
    screenshot(page, "market-old-row-phone")


@pytest.fixture
def provider_server(fake: FakeProviders) -> Iterator[AppServer]:
    app = AppServer({
        **SERVER_ENV,
        "FEEDS": "twelvedata", "TWELVEDATA_API_KEY": KEYS["td"],
        "TWELVEDATA_BASE_URL": fake.url("td"), "TWELVEDATA_CALLS_PER_MINUTE": "100000",
        "TWELVEDATA_CALLS_PER_DAY": "0", "NEW_SYMBOLS_PER_MINUTE": "100000",
        "BREAKER_FAIL_MAX": "1000", "BOARD_SYMBOLS": "AAPL,MSFT",
        "DEFAULT_WATCHLIST": "AAPL,MSFT",
    })  # fmt: skip
    app.start()
    yield app
    app.stop()


def test_real_provider_prices_show_no_simulated_notice(
    page: Page, provider_server: AppServer
) -> None:
    page.set_viewport_size(PHONE)
    for path in ("/", "/market", "/stock/AAPL"):
        page.goto(provider_server.base + path)
        expect(page.locator(f'{ROWS}[data-symbol="AAPL"]')).to_have_attribute(
            "data-source", "twelvedata"
        )
        expect(page.locator(BADGE)).to_have_text(re.compile("^(Live|Delayed|Market closed)$"))
        expect(page.locator(NOTICE)).to_be_hidden()
        tag = page.locator(f'{ROWS}[data-symbol="AAPL"] [data-col="symbol"] abbr.src')
        expect(tag).to_be_visible()
        expect(tag).to_have_text("TD")
        expect(tag).to_have_attribute("title", "Source: Twelve Data")


def test_a_reconnect_on_a_healthy_feed_toasts_no_delayed_live_pair(
    page: Page, server: AppServer
) -> None:
    sockets: list[WebSocketRoute] = []

    def route(ws: WebSocketRoute) -> None:
        ws.connect_to_server()
        sockets.append(ws)

    page.route_web_socket(re.compile(r".*/ws\?.*"), route)
    # Reconnect after ~4 s, well past the page's delay threshold (2 x 0.3 s + 2 s): the rows it
    # holds are then older than that until the server's snapshot lands. The watchlist's several
    # symbols keep the freshest price recent.
    page.add_init_script("window.__stocktrackerTuning = { backoff: [4000], jitter: 0 }")
    page.add_init_script(TOAST_LOG)
    page.goto(server.base + "/")
    expect(page.locator(BADGE)).to_have_text("Live · simulated")
    assert data_toasts(page) == []

    for _ in range(2):
        count = len(sockets)
        sockets[-1].close(code=4000, reason="test: dropped")
        expect(page.locator(BADGE)).to_have_text("Reconnecting")
        expect(page.locator(BADGE)).to_have_text("Live · simulated", timeout=15_000)
        assert len(sockets) == count + 1
        # Long enough for the snapshot and several live batches after it.
        expect_toasts(page, [], for_s=3)
    restored = page.evaluate("() => window.__toasts.filter(t => /restored/.test(t)).length")
    assert restored == 2


def test_a_real_delay_toasts_once_and_recovery_once(page: Page, server: AppServer) -> None:
    passing = True

    def route(ws: WebSocketRoute) -> None:
        upstream = ws.connect_to_server()
        # The link stays up but no data gets through: to the page, the source went quiet.
        upstream.on_message(lambda message: ws.send(message) if passing else None)

    page.route_web_socket(re.compile(r".*/ws\?.*"), route)
    page.add_init_script(TOAST_LOG)
    page.goto(server.base + "/")
    expect(page.locator(BADGE)).to_have_text("Live · simulated")
    passing = False
    expect(page.locator(BADGE)).to_have_text("Delayed · simulated", timeout=15_000)
    delayed = ["Prices are delayed: no fresh data from the source."]
    # The toast may wait for the link to settle (3 s after it came up, if no batch landed yet).
    page.wait_for_function("() => window.__toasts.some(t => t.startsWith('Prices are delayed'))")
    expect_toasts(page, delayed, for_s=3)  # a while in the delayed state: still one toast
    passing = True
    expect(page.locator(BADGE)).to_have_text("Live · simulated", timeout=15_000)
    expect_toasts(page, [*delayed, "Prices are live again."], for_s=2)


def expect_toasts(page: Page, expected: list[str], for_s: float) -> None:
    """The data toasts shown so far are `expected`, and stay so for `for_s` seconds."""
    deadline = time.monotonic() + for_s
    while True:
        assert data_toasts(page) == expected, data_toasts(page)
        if time.monotonic() > deadline:
            return
        page.wait_for_timeout(200)
