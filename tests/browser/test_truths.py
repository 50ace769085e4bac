"""Small truths of the pages (issue 13, point 6), in real Chromium: header cells of one size, a
chart with a time axis whose labels the last point's dot cannot cover, no Live badge on a page
without quotes, an add-to-watchlist control on the stock page, symbol links that look like links."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.browser.conftest import screenshot
from tests.support import AppServer

BADGE = "#conn .badge-label"


def test_every_column_header_has_the_same_size(page: Page, server: AppServer) -> None:
    for path in ("/", "/stock/TCS", "/market"):
        page.goto(server.base + path)
        sizes = page.eval_on_selector_all(
            "table.quotes thead th",
            "cells => cells.map(c => [c.textContent.trim(), getComputedStyle(c).fontSize])",
        )
        assert len({size for _, size in sizes}) == 1, (path, sizes)


def test_the_chart_has_a_time_axis_and_the_dot_never_covers_the_scale(
    page: Page, server: AppServer
) -> None:
    page.goto(server.base + "/stock/NVDA")
    expect(page.locator(BADGE)).to_have_text("Live · simulated")
    # HH:MM, or HH:MM:SS while the chart spans under three minutes (a new server's chart).
    clock = re.compile(r"^\d\d:\d\d(:\d\d)?$")
    expect(page.locator("#chart-start")).to_have_text(clock)
    expect(page.locator("#chart-mid")).to_have_text(clock)
    # The last label names the exchange's zone (NVDA: New York, EST or EDT).
    end = re.compile(r"^(\d\d:\d\d(:\d\d)?) E[SD]T$")
    expect(page.locator("#chart-end")).to_have_text(end)
    # Once the chart spans a few seconds, start and end never read the same.
    page.wait_for_function(
        """() => document.getElementById('chart-start').textContent
            !== document.getElementById('chart-end').textContent.split(' ')[0]"""
    )
    # The last price becomes the day's high: the dot goes to the top right corner.
    page.evaluate(
        """() => {
        const row = document.getElementById('q-NVDA').cloneNode(true);
        row.dataset.epoch = String(Number(row.dataset.epoch) + 1000);
        row.dataset.price = String(parseFloat(row.dataset.price) * 1.2);
        row.dataset.time = String(Date.now() + 60000);
        window.stocktracker.ingest(row.outerHTML);
        window.stocktracker.flush();
    }"""
    )
    page.wait_for_function(
        "() => Number(document.querySelector('#chart .dot').getAttribute('cy')) < 20"
    )
    dot = page.locator("#chart .dot").bounding_box()
    high = page.locator("#chart-high").bounding_box()
    assert dot is not None and high is not None
    overlaps = (
        dot["x"] < high["x"] + high["width"]
        and high["x"] < dot["x"] + dot["width"]
        and dot["y"] < high["y"] + high["height"]
        and high["y"] < dot["y"] + dot["height"]
    )
    assert not overlaps, (dot, high)
    screenshot(page, "chart-high")


def test_the_404_page_claims_no_live_connection(page: Page, server: AppServer) -> None:
    response = page.goto(server.base + "/stock/NOPE")
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    expect(page.locator("#conn")).to_have_count(0)
    expect(page.locator("header.top")).not_to_contain_text("Connecting")
    screenshot(page, "not-found-no-badge")


def test_the_stock_page_adds_to_the_watchlist(page: Page, server: AppServer) -> None:
    page.context.clear_cookies()
    page.goto(server.base + "/stock/NVDA")
    page.get_by_role("button", name="Add NVDA to watchlist").click()
    page.wait_for_url(server.base + "/")
    expect(page.locator("#q-NVDA")).to_be_visible()
    page.goto(server.base + "/stock/NVDA")
    expect(page.get_by_role("link", name="On your watchlist")).to_be_visible()
    expect(page.get_by_role("button", name="Add NVDA to watchlist")).to_have_count(0)


def test_symbol_links_look_like_links(page: Page, server: AppServer) -> None:
    page.goto(server.base + "/market")
    expect(page.locator("#gainers a, #losers a").first).to_be_visible()
    looks = page.evaluate(
        """() => {
        const style = el => {
            const s = getComputedStyle(el);
            return {color: s.color, line: s.textDecorationLine};
        };
        const plain = document.querySelector('.not-a-link') || document.body;
        return {
            sym: style(document.querySelector('table.quotes a.sym')),
            mover: style(document.querySelector('#gainers a, #losers a')),
            text: getComputedStyle(plain).color,
        };
    }"""
    )
    for link in (looks["sym"], looks["mover"]):
        assert link["line"] == "underline", looks
        assert link["color"] == "rgb(31, 111, 235)" != looks["text"], looks
