"""Losing the server, getting it back, and living without WebSocket, in a real browser."""

from __future__ import annotations

import re

from playwright.sync_api import Page, WebSocketRoute, expect

from tests.browser.conftest import prices, screenshot, wait_for_moves
from tests.support import AppServer

BADGE = "#conn .badge-label"
VIA = "#conn .badge-via"


def toast(page: Page, text: str) -> None:
    expect(page.locator("#toasts .toast", has_text=text).first).to_be_attached()


def test_backoff_is_1_2_4_8_16_30_seconds_with_jitter(page: Page, server: AppServer) -> None:
    page.goto(server.base + "/stock/TCS")
    delays = page.evaluate(
        """async () => {
        const { backoffDelay } = await import('/static/js/connection.js');
        const at = (r) => [0, 1, 2, 3, 4, 5, 6, 9].map(a => backoffDelay(a, () => r));
        return { mid: at(0.5), low: at(0), high: at(0.999999) };
    }"""
    )
    assert delays["mid"] == [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
    assert delays["low"][:3] == [800, 1600, 3200]  # 20 % jitter either way...
    assert delays["high"][:3] == [1200, 2400, 4800]
    assert max(delays["high"]) == 30000  # ...and never past the 30 s cap


def test_server_restart_reconnects_without_a_reload(page: Page, server: AppServer) -> None:
    page.goto(server.base + "/")
    expect(page.locator(BADGE)).to_have_text("Live · simulated")
    page.evaluate("window.__sameDocument = true")

    server.stop()
    expect(page.locator(BADGE)).to_have_text(re.compile("^(Reconnecting|Offline)$"))
    toast(page, "Connection lost")
    expect(page.locator(BADGE)).to_have_text("Offline")  # the retry finds nobody at /health
    screenshot(page, "dashboard-offline")

    server.start()  # the same port
    # Backoff is 1, 2, 4, 8 s (+-20 %) from the loss: back within one more step.
    expect(page.locator(BADGE)).to_have_text("Live · simulated", timeout=45_000)
    expect(page.locator(VIA)).to_have_text("WebSocket")
    toast(page, "Connection restored")
    assert page.evaluate("window.__sameDocument") is True
    # The new server's fetcher has a later epoch, so its prices (even with low seqs) apply.
    wait_for_moves(page, prices(page), at_least=2, timeout=15)


def test_blocked_websocket_falls_back_to_long_poll_and_back(page: Page, server: AppServer) -> None:
    blocked = True

    def route(ws: WebSocketRoute) -> None:
        if blocked:
            ws.close()  # what a proxy that refuses WebSockets looks like to the page
        else:
            ws.connect_to_server()

    page.route_web_socket(re.compile(r".*/ws\?.*"), route)
    # Try the WebSocket again every 1.5 s instead of every 10 s, to keep the test short.
    page.add_init_script("window.__stocktrackerTuning = { wsRetryMs: 1500 }")
    page.goto(server.base + "/")
    expect(page.locator(VIA)).to_have_text("Long-poll")
    expect(page.locator(BADGE)).to_have_text("Live · simulated")
    toast(page, "switched to long-polling")
    page.locator("#conn").hover()
    expect(page.locator('[data-tip="transport"]')).to_have_text("Long-poll")
    page.mouse.move(0, 400)
    wait_for_moves(page, prices(page), at_least=2, timeout=10)
    screenshot(page, "dashboard-long-poll")

    blocked = False
    expect(page.locator(VIA)).to_have_text("WebSocket")
    toast(page, "Back on WebSocket")
    wait_for_moves(page, prices(page), at_least=2, timeout=10)
