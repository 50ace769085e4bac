"""A symbol the provider cannot price, in a real browser: its row says so instead of waiting.

The app runs on FEEDS=twelvedata against the fake provider server (tests/fakes/provider.py), which
answers Twelve Data's per-symbol "not found" for the symbols in its `unknown` set.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import SERVER_ENV, screenshot
from tests.fakes.provider import KEYS, FakeProviders, fake, fake_server
from tests.support import AppServer

__all__ = ["fake", "fake_server"]

UNKNOWN = "NOTATICKER"  # in the fake's `unknown` set from the start
DELISTED = "ZZZZ"  # priced at first; the provider stops knowing it during the test


@pytest.fixture
def provider_server(fake: FakeProviders) -> Iterator[AppServer]:
    # The provider is down when the page is first rendered, so every row starts "waiting for
    # data"; the test brings it back. No breaker, quota or new-symbol budget gets in the way.
    fake.state.mode["td"] = "down"
    app = AppServer({
        **SERVER_ENV,
        "FEEDS": "twelvedata", "TWELVEDATA_API_KEY": KEYS["td"],
        "TWELVEDATA_BASE_URL": fake.url("td"), "TWELVEDATA_CALLS_PER_MINUTE": "100000",
        "TWELVEDATA_CALLS_PER_DAY": "0", "NEW_SYMBOLS_PER_MINUTE": "100000",
        "BREAKER_FAIL_MAX": "1000", "BOARD_SYMBOLS": "AAPL",
        "DEFAULT_WATCHLIST": f"AAPL,{UNKNOWN},{DELISTED}",
    })  # fmt: skip
    app.start()
    yield app
    app.stop()


def row(page: Page, symbol: str) -> str:
    return f'table[data-live] tr.quote[data-symbol="{symbol}"]'


def expect_rejected(page: Page, symbol: str) -> None:
    selector = row(page, symbol)
    expect(page.locator(selector)).to_have_class("quote rejected")
    expect(page.locator(f'{selector} [data-col="price"]')).to_have_text("Unknown symbol")
    expect(page.locator(f'{selector} [data-col="time"]')).to_have_text("not priced by twelvedata")
    # The page-only cell stays: the trader can remove the symbol.
    remove = page.get_by_role("button", name=f"Remove {symbol} from the watchlist")
    expect(remove).to_be_visible()


def test_a_symbol_the_provider_cannot_price_shows_as_unknown_instead_of_waiting(
    page: Page, fake: FakeProviders, provider_server: AppServer
) -> None:
    page.goto(provider_server.base + "/")
    for symbol in ("AAPL", UNKNOWN, DELISTED):
        expect(page.locator(f'{row(page, symbol)} [data-col="time"]')).to_have_text(
            "waiting for data"
        )
    page.wait_for_function("() => window.stocktracker.view().transport === 'ws'")

    # The provider answers again: AAPL and ZZZZ get prices, NOTATICKER its "not found", which
    # reaches the page as the html format's rejected row, swapped in over the pending one.
    fake.state.mode["td"] = "ok"
    expect_rejected(page, UNKNOWN)
    for symbol in ("AAPL", DELISTED):
        expect(page.locator(row(page, symbol))).not_to_have_attribute("data-seq", "0")
    screenshot(page, "dashboard-rejected")

    # A priced row turns rejected as well when the provider stops knowing its symbol.
    fake.state.unknown.add(DELISTED)
    expect_rejected(page, DELISTED)
    expect(page.locator(row(page, "AAPL"))).not_to_have_class("quote rejected")

    # A reload shows both rejected rows in the server's HTML, before any script runs, and the
    # live connection (refused at once for them) keeps them that way.
    response = page.goto(provider_server.base + "/")
    assert response is not None
    html = response.text()
    for symbol in (UNKNOWN, DELISTED):
        assert f'id="q-{symbol}" class="quote rejected"' in html
    page.wait_for_function("() => window.stocktracker.view().transport === 'ws'")
    expect_rejected(page, UNKNOWN)
    expect_rejected(page, DELISTED)

    page.get_by_role("button", name=f"Remove {UNKNOWN} from the watchlist").click()
    expect(page.locator(row(page, UNKNOWN))).to_have_count(0)
    expect(page.locator("#watchlist-message")).to_have_text(f"Removed {UNKNOWN}.")
