"""Price alerts in a real browser: set on one replica, fired while the browser is on another
(two uvicorn processes on one redis-server, the fake provider's prices set by the test); and the
delivery latency from the crossing price's publish to the toast, measured (printed, not asserted:
run with `-s` to read it)."""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest
from playwright.sync_api import Page, WebSocketRoute, expect

from tests.browser.conftest import SERVER_ENV, screenshot
from tests.fakes.provider import KEYS, FakeProviders, fake_server
from tests.support import AppServer, RedisServer, wait_for

__all__ = ["fake_server"]
BADGE = "#conn .badge-label"
VIA = "#conn .badge-via"
ALERT_TOAST = "#toasts .toast-alert"


@pytest.fixture(scope="module")
def pair(redis_server: RedisServer, fake_server: FakeProviders) -> Iterator[list[AppServer]]:
    if redis_server.proc is None:
        redis_server.start()
    redis_server.cli("FLUSHALL")
    fake_server.reset()
    env = {
        **SERVER_ENV, "REDIS_URL": redis_server.url, "LEASE_TTL": "1", "REGISTRY_TTL": "1.5",
        "FEEDS": "finnhub", "FINNHUB_API_KEY": KEYS["fh"],
        "FINNHUB_BASE_URL": fake_server.url("fh"), "FINNHUB_CALLS_PER_MINUTE": "100000",
        "BOARD_SYMBOLS": "AAPL,MSFT,IBM", "DEFAULT_WATCHLIST": "AAPL,MSFT",
    }  # fmt: skip
    servers = [AppServer({**env, "REPLICA_ID": f"r{n}"}) for n in range(2)]
    for server in servers:
        server.start()
    yield servers
    for server in servers:
        server.stop()


def set_price(fake: FakeProviders, symbol: str, price: str) -> None:
    fake.state.prices[symbol] = Decimal(price)

    def shown() -> bool:
        body = httpx.get(
            "http://" + fake.url("fh").split("//")[1].split("/")[0] + "/fh/quote",
            params={"symbol": symbol},
            headers={"X-Finnhub-Token": KEYS["fh"]},
        )
        return bool(body.json()["c"] == float(price))

    wait_for(shown, 5, "the fake provider's price")


def priced(server: AppServer, symbol: str, price: str) -> None:
    def shown() -> bool:
        body = httpx.get(f"{server.base}/api/quotes", params={"symbols": symbol}).json()
        return any(Decimal(q["price"]) == Decimal(price) for q in body["quotes"])

    wait_for(shown, 15, f"{symbol} at {price}")


def test_an_alert_set_on_one_replica_toasts_on_the_other(
    page: Page, pair: list[AppServer], fake_server: FakeProviders
) -> None:
    a, b = pair
    set_price(fake_server, "IBM", "220")
    priced(a, "IBM", "220")
    page.goto(f"{a.base}/stock/IBM")
    page.select_option("#quick-kind", "above")
    page.fill("#quick-value", "230")
    page.fill("#quick-note", "sell half")
    page.click(".alert-quick button[type=submit]")
    expect(page.locator("#alert-message")).to_have_text("Alert set: IBM above 230.")
    expect(page.locator("#alert-list tr[data-alert]")).to_have_count(1)
    # The same browser, now on the other replica (cookies are per host, not per port).
    page.goto(f"{b.base}/")
    page.wait_for_function("() => window.stocktracker.view().link === 'up'")
    set_price(fake_server, "IBM", "231.25")
    toast = page.locator(ALERT_TOAST, has_text="IBM above 230")
    expect(toast).to_be_visible()
    expect(toast).to_contain_text("231.25")
    expect(toast).to_contain_text("source finnhub")
    expect(toast).to_contain_text("sell half")
    screenshot(page, "alert-toast")
    # It fired once for the cluster (the list says so), into this one tab once.
    assert len(page.evaluate("window.stocktracker.alerts()")) == 1
    page.goto(f"{a.base}/alerts")
    expect(page.locator("#alert-list tr[data-alert]")).to_contain_text("fired 1× (last at 231.25)")


def test_alerts_reach_a_page_on_long_poll_too(
    page: Page, pair: list[AppServer], fake_server: FakeProviders
) -> None:
    a, b = pair
    set_price(fake_server, "MSFT", "400")
    priced(b, "MSFT", "400")
    page.goto(f"{b.base}/alerts?symbol=MSFT")
    page.select_option("#alert-kind", "below")
    page.fill("#alert-value", "390")
    page.click(".alert-add button[type=submit]")
    expect(page.locator("#alert-message")).to_have_text("Alert set: MSFT below 390.")

    def refuse(ws: WebSocketRoute) -> None:
        ws.close()

    page.route_web_socket(re.compile(r".*/ws\?.*"), refuse)
    page.goto(f"{a.base}/")
    expect(page.locator(VIA)).to_have_text("Long-poll")
    set_price(fake_server, "MSFT", "389")
    expect(page.locator(ALERT_TOAST, has_text="MSFT below 390")).to_be_visible()


def test_publish_to_toast_latency_across_two_replicas(
    page: Page, pair: list[AppServer], fake_server: FakeProviders
) -> None:
    """Fires one alert ten times (crossing, then back past the re-arm band), set through one
    replica with the browser on the other, and prints the publish -> toast times."""
    a, b = pair
    set_price(fake_server, "AAPL", "200")
    priced(a, "AAPL", "200")
    with httpx.Client() as client:
        answer = client.post(
            f"{a.base}/alerts", data={"symbol": "AAPL", "kind": "above", "value": "210"},
            follow_redirects=False,
        )  # fmt: skip
        assert answer.status_code == 303
        cookie = client.cookies["stocktracker_alerts"]
    page.context.add_cookies([{"name": "stocktracker_alerts", "value": cookie, "url": b.base}])
    page.goto(f"{b.base}/market")
    page.wait_for_function("() => window.stocktracker.view().link === 'up'")
    rounds = 10
    for n in range(rounds):
        set_price(fake_server, "AAPL", f"211.{n:02d}")
        page.wait_for_function("(n) => window.stocktracker.alerts().length >= n", arg=n + 1)
        set_price(fake_server, "AAPL", "200")  # back past the re-arm band (210 × 0.995)
        priced(a, "AAPL", "200")
    shown = page.evaluate("window.stocktracker.alerts()")
    assert len(shown) == rounds
    latencies = [s["at"] - s["publishedAt"] for s in shown]
    assert all(ms >= 0 for ms in latencies)
    print(
        f"\nalert latency publish -> toast across two replicas, {rounds} alerts: "
        f"median {statistics.median(latencies):.0f} ms, min {min(latencies)} ms, "
        f"max {max(latencies)} ms"
    )


# The browser's Notification API, recorded: permission starts undecided ("default").
NOTIFICATIONS = """
window.__notes = { asked: 0, shown: [] };
class RecordedNotification {
  constructor(title, options) {
    window.__notes.shown.push({ title, body: options && options.body });
  }
}
RecordedNotification.permission = "default";
RecordedNotification.requestPermission = async () => {
  window.__notes.asked += 1;
  RecordedNotification.permission = "granted";
  return "granted";
};
window.Notification = RecordedNotification;
"""


def test_notifications_are_asked_for_on_a_click_and_shown_for_unwatched_symbols(
    page: Page, pair: list[AppServer], fake_server: FakeProviders, redis_server: RedisServer
) -> None:
    a, b = pair
    set_price(fake_server, "NVDA", "100")
    with httpx.Client(timeout=10) as client:
        answer = client.post(
            f"{a.base}/alerts", data={"symbol": "NVDA", "kind": "above", "value": "105"},
            follow_redirects=False,
        )  # fmt: skip
        assert answer.status_code == 303, answer.text
        cookie = client.cookies["stocktracker_alerts"]
    page.context.add_cookies([{"name": "stocktracker_alerts", "value": cookie, "url": b.base}])
    page.add_init_script(NOTIFICATIONS)
    page.goto(f"{b.base}/alerts")
    allow = page.locator("#notify-allow")
    expect(allow).to_be_visible()
    page.wait_for_function("() => window.stocktracker.view().link === 'up'")
    assert page.evaluate("window.__notes.asked") == 0  # never on load
    allow.click()
    expect(page.locator("#toasts .toast", has_text="Browser notifications are on")).to_be_visible()
    expect(allow).to_be_hidden()
    assert page.evaluate("window.__notes.asked") == 1
    # Nobody watches NVDA (setting the alert priced it, watching it for a moment; no page shows
    # it): the fetcher prices it for its alert all the same.
    wait_for(
        lambda: "NVDA" not in redis_server.cli("SMEMBERS", "subscriptions:active"), 20,
        "NVDA to be watched by nobody",
    )  # fmt: skip
    set_price(fake_server, "NVDA", "105.5")
    expect(page.locator(ALERT_TOAST, has_text="NVDA above 105")).to_be_visible()
    page.wait_for_function("() => window.__notes.shown.length === 1")
    shown = page.evaluate("window.__notes.shown[0]")
    assert shown["title"] == "🔔 NVDA above 105"
    assert "105.5" in shown["body"] and "finnhub" in shown["body"]
