"""Freshness per symbol in a real browser (issue 13, point 1), on the fake Twelve Data server.

The page calls itself Delayed from the server's word, not from how long a price went unchanged:
in a quiet market (no price moves) it stays Live and toasts nothing; a symbol the source stops
answering for gets its own stale marker and age while the others, and the badge, stay Live; a
source time that is not from the exchange's today shows its date.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_provenance import BADGE, ROWS, TOAST_LOG, data_toasts
from tests.fakes.provider import KEYS, FakeProviders, fake, fake_server
from tests.support import AppServer

__all__ = ["fake", "fake_server"]

# Every badge state the page shows, kept; installed before the page's own script runs.
BADGE_LOG = """
window.__badges = [];
new MutationObserver(() => {
  const el = document.getElementById("conn");
  if (el && window.__badges[window.__badges.length - 1] !== el.dataset.state) {
    window.__badges.push(el.dataset.state);
  }
}).observe(document, { attributes: true, subtree: true, attributeFilter: ["data-state"] });
"""


@pytest.fixture
def quiet(fake: FakeProviders) -> Iterator[AppServer]:
    fake.state.frozen = {"AAPL", "MSFT"}  # nothing ever moves
    app = AppServer({
        "FETCH_INTERVAL": "1", "POLL_TIMEOUT": "2",
        "FEEDS": "twelvedata", "TWELVEDATA_API_KEY": KEYS["td"],
        "TWELVEDATA_BASE_URL": fake.url("td"), "TWELVEDATA_CALLS_PER_MINUTE": "100000",
        "TWELVEDATA_CALLS_PER_DAY": "0", "BOARD_SYMBOLS": "AAPL,MSFT",
        "DEFAULT_WATCHLIST": "AAPL,MSFT",
    })  # fmt: skip
    app.start()
    yield app
    app.stop()


def wait_for_notes(page: Page, seconds: float) -> None:
    """Until the page has heard notes spanning `seconds` of the server's confirmations."""
    start = page.evaluate("() => window.stocktracker.fresh().at")
    page.wait_for_function(
        "([start, ms]) => window.stocktracker.fresh().at - start >= ms",
        arg=[start, seconds * 1000],
        timeout=(seconds + 15) * 1000,
    )


@pytest.mark.parametrize("path", ["/", "/stock/AAPL"])
def test_a_quiet_market_stays_live_and_toasts_nothing(
    page: Page, quiet: AppServer, path: str
) -> None:
    page.add_init_script(TOAST_LOG)
    page.add_init_script(BADGE_LOG)
    page.goto(quiet.base + path)
    expect(page.locator(BADGE)).to_have_text("Live")
    # Three times the page's threshold (2 x 1 s + 2 s) without a single price change.
    wait_for_notes(page, 12)
    assert page.evaluate("() => window.__badges").count("delayed") == 0
    assert data_toasts(page) == []
    expect(page.locator(f"{ROWS}.stale")).to_have_count(0)
    # Confirmed current, yet the price itself is from the source's last trade (15 Jan 2025 in
    # the fake): its row says how old, and its time cell the date, without a stale marker.
    row = page.locator(f'{ROWS}[data-symbol="AAPL"]')
    expect(row.locator('[data-col="symbol"] .age')).to_have_text(re.compile(r"^\d+ d$"))
    if path == "/":
        expect(row.locator('[data-col="time"] time .day')).to_have_text("15 Jan")
        expect(row.locator('[data-col="time"] time .day')).to_be_visible()


def test_one_symbol_the_source_stops_answering_for_is_marked_alone(
    page: Page, quiet: AppServer, fake: FakeProviders
) -> None:
    page.add_init_script(TOAST_LOG)
    page.goto(quiet.base + "/")
    expect(page.locator(BADGE)).to_have_text("Live")
    msft = page.locator(f'{ROWS}[data-symbol="MSFT"]')
    aapl = page.locator(f'{ROWS}[data-symbol="AAPL"]')
    fake.state.silent = {"MSFT"}
    expect(msft).to_have_class(re.compile(r"\bstale\b"), timeout=20_000)
    age = msft.locator('[data-col="symbol"] .age')
    expect(age).to_be_visible()
    expect(age).to_have_text(re.compile(r"^\d+ s$"))
    expect(age).to_have_attribute("title", re.compile("^Not confirmed by the source for"))
    expect(aapl).not_to_have_class(re.compile(r"\bstale\b"))
    expect(page.locator(BADGE)).to_have_text("Live")  # the others are current: not Delayed
    assert data_toasts(page) == []
    # The source answers again: the marker goes.
    fake.state.silent = set()
    expect(msft).not_to_have_class(re.compile(r"\bstale\b"), timeout=20_000)


def test_when_the_source_confirms_nothing_the_page_is_delayed(
    page: Page, quiet: AppServer, fake: FakeProviders
) -> None:
    page.add_init_script(TOAST_LOG)
    page.goto(quiet.base + "/")
    expect(page.locator(BADGE)).to_have_text("Live")
    fake.state.silent = {"AAPL", "MSFT"}
    expect(page.locator(BADGE)).to_have_text("Delayed", timeout=20_000)
    expect(page.locator(f"{ROWS}.stale")).to_have_count(2)
    fake.state.silent = set()
    expect(page.locator(BADGE)).to_have_text("Live", timeout=20_000)
    assert data_toasts(page) == [
        "Prices are delayed: no fresh data from the source.",
        "Prices are live again.",
    ]


def test_ages_read_as_people_say_them(page: Page, quiet: AppServer) -> None:
    page.goto(quiet.base + "/")
    texts = page.evaluate(
        """async () => {
        const { ageText } = await import("/static/js/age.js");
        return [45e3, 12 * 60e3, 3 * 3600e3 + 5000, 2 * 86400e3, 59143948e3].map(ageText);
    }"""
    )
    assert texts == ["45 s", "12 min", "3 h", "2 d", "684 d"]
