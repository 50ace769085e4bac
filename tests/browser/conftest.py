"""Real-browser tests: Playwright drives Debian's chromium (never a downloaded browser).

One chromium for the whole session, one app server per module, a fresh browser context (so fresh
cookies and storage) per test. Every page records its console: a test fails on any
Content-Security-Policy violation or uncaught script error. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Error, Page, Playwright, sync_playwright

from tests.support import ROOT, AppServer

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags chromium keeps calling home, which a closed network
# turns into a flood of failing connections.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = ROOT / "test-artifacts"
# Generous: the machine is shared and two cores run other people's tests too.
TIMEOUT_MS = 20_000
# Prices move every 0.3 s; long-polls return within 2 s when nothing moves.
SERVER_ENV = {"FETCH_INTERVAL": "0.3", "POLL_TIMEOUT": "2"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/browser/" in str(item.path):
            item.add_marker(pytest.mark.browser)
    # The slowest tests last: quick failures first, and the browser outlives no other test.
    items.sort(key=lambda item: "/browser/" in str(item.path))


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        pytest.fail(f"{CHROMIUM} is missing: run `make test`, which installs Debian's chromium")
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def server() -> Iterator[AppServer]:
    app = AppServer(SERVER_ENV)
    app.start()
    yield app
    app.stop()


class PageProblems:
    """Console errors and uncaught exceptions seen by a page."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.messages.append(f"{message.text} at {message.location}")

    def error(self, error: Error) -> None:
        self.messages.append(f"uncaught: {error}")

    def csp_violations(self) -> list[str]:
        keys = ("Content Security Policy", "Refused to", "CSP violation")
        return [m for m in self.messages if any(key in m for key in keys)]


@pytest.fixture
def problems() -> PageProblems:
    return PageProblems()


@pytest.fixture
def page(browser: Browser, problems: PageProblems) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    # Name the element behind any CSP violation, so a failure says what to fix.
    page.add_init_script(
        "document.addEventListener('securitypolicyviolation', e => console.error("
        "'CSP violation:', e.violatedDirective, e.target && e.target.outerHTML"
        " ? e.target.outerHTML.slice(0, 200) : ''))"
    )
    page.on("console", problems.console)
    page.on("pageerror", problems.error)
    yield page
    context.close()
    assert not problems.csp_violations(), problems.csp_violations()
    assert not [m for m in problems.messages if m.startswith("uncaught")], problems.messages


PRICES_JS = """() => Object.fromEntries([...document.querySelectorAll(
    'table[data-live] tr.quote[id]')].map(r => [r.dataset.symbol, r.dataset.price]))"""
MOVED_JS = """([before, n]) => {
    const rows = [...document.querySelectorAll('table[data-live] tr.quote[id]')];
    return rows.filter(r => r.dataset.symbol in before
                            && r.dataset.price !== before[r.dataset.symbol]).length >= n;
}"""


def prices(page: Page) -> dict[str, str]:
    """Symbol -> the exact price each live row shows (from its data-price)."""
    shown: dict[str, str] = page.evaluate(PRICES_JS)
    return shown


def wait_for_moves(page: Page, before: dict[str, str], at_least: int, timeout: float) -> None:
    """Wait until `at_least` rows show a price different from `before`."""
    page.wait_for_function(MOVED_JS, arg=[before, at_least], timeout=timeout * 1000)


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
