"""A private deployment (ACCESS_TOKENS) in real Chromium: sign in, see live prices, sign out."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, WebSocketRoute, expect

from tests.browser.conftest import SERVER_ENV, prices, screenshot, wait_for_moves
from tests.support import AppServer

TOKEN = "alice-browser-token-7e1f2a9c"


@pytest.fixture(scope="module")
def private() -> Iterator[AppServer]:
    app = AppServer({**SERVER_ENV, "ACCESS_TOKENS": f"alice:{TOKEN}"})
    app.start()
    yield app
    app.stop()


def test_sign_in_see_live_prices_sign_out(page: Page, private: AppServer) -> None:
    page.goto(private.base + "/market")
    expect(page).to_have_url(private.base + "/login?next=/market")
    screenshot(page, "login")

    page.get_by_label("Access token").fill("not-the-token-0123456789")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("That is not a valid access token.")
    expect(page.get_by_label("Access token")).to_have_value("")

    page.get_by_label("Access token").fill(TOKEN)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(private.base + "/market")
    # Live over the WebSocket, which the session cookie opened (not a long-poll fallback).
    expect(page.locator("#conn .badge-label")).to_have_text("Live · simulated")
    expect(page.locator("#conn .badge-via")).to_have_text("WebSocket")
    wait_for_moves(page, prices(page), at_least=2, timeout=10)

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    page.goto(private.base + "/")
    expect(page).to_have_url(private.base + "/login")


def test_a_session_that_ends_sends_the_page_to_sign_in(page: Page, private: AppServer) -> None:
    """An open WebSocket outlives the session; the next reconnect is refused, and the page goes
    to the login page (through the long-poll's 401) and from there back to where it was."""
    sockets: list[WebSocketRoute] = []

    def through(ws: WebSocketRoute) -> None:
        sockets.append(ws)
        ws.connect_to_server()

    page.route_web_socket(re.compile(r".*/ws\?.*"), through)
    page.add_init_script("window.__stocktrackerTuning = { wsRetryMs: 1500 }")
    page.goto(private.base + "/login?next=/stock/TCS")
    page.get_by_label("Access token").fill(TOKEN)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(private.base + "/stock/TCS")
    expect(page.locator("#conn .badge-label")).to_have_text("Live · simulated")
    page.context.clear_cookies()  # as when the session expires
    sockets[-1].close(code=1012, reason="server restarting")
    expect(page).to_have_url(private.base + "/login?next=%2Fstock%2FTCS", timeout=45_000)
    page.get_by_label("Access token").fill(TOKEN)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(private.base + "/stock/TCS")
