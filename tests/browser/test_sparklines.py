"""Sparklines in real Chromium: drawn by the server before any script runs, extended by live
prices (and by many, without growing past MAX_POINTS), sized down on phones."""

from __future__ import annotations

from playwright.sync_api import Page, Route, expect

from app.settings import DEFAULT_BOARD, DEFAULT_WATCHLIST
from app.sparkline import MAX_POINTS
from tests.browser.conftest import screenshot
from tests.support import AppServer

BADGE = "#conn .badge-label"
SPARKS = "td.spark > svg[role='img']"
POINTS_JS = (
    "s => document.querySelector(`td.spark[data-spark='${s}'] polyline`)"
    ".getAttribute('points').trim().split(/\\s+/).length"
)


def test_sparklines_are_there_before_any_script_runs(page: Page, server: AppServer) -> None:
    blocked: list[str] = []

    def block(route: Route) -> None:
        blocked.append(route.request.url)
        route.abort()

    page.route("**/*.js", block)
    for path, symbols in (("/", DEFAULT_WATCHLIST), ("/market", DEFAULT_BOARD)):
        page.goto(server.base + path)
        assert page.evaluate("() => window.stocktracker === undefined")  # no page script ran
        expect(page.locator(SPARKS)).to_have_count(len(symbols))
        label = page.locator(f"td.spark[data-spark='{symbols[0]}'] > svg").get_attribute(
            "aria-label"
        )
        assert label is not None and label.startswith(f"{symbols[0]} today: "), label
        expect(page.get_by_role("img", name=label)).to_have_count(1)
    assert any(url.endswith("/static/app.js") for url in blocked), blocked


def test_sparklines_extend_as_live_prices_arrive(page: Page, server: AppServer) -> None:
    page.goto(server.base + "/")
    expect(page.locator(BADGE)).to_have_text("Live · simulated")
    served = {s: int(page.locator(f"td.spark[data-spark='{s}']").get_attribute("data-t1") or 0)
              for s in DEFAULT_WATCHLIST}  # fmt: skip
    # Live rows (no sparkline in them) move each line's end to the row's newest price.
    page.wait_for_function(
        """served => Object.entries(served).filter(([s, t1]) => {
            const cell = document.querySelector(`td.spark[data-spark="${s}"]`);
            const row = cell.closest('tr');
            return Number(cell.dataset.t1) > t1 && cell.dataset.t1 === row.dataset.time
                && cell.querySelector('svg').getAttribute('aria-label').includes(' to '
                   + Number(row.dataset.price).toLocaleString('en-US',
                       {minimumFractionDigits: 2, maximumFractionDigits: 2}));
        }).length >= 3""",
        arg=served,
    )
    screenshot(page, "sparklines")


def test_many_prices_keep_at_most_max_points_and_an_empty_cell_gets_a_line(
    page: Page, server: AppServer
) -> None:
    page.goto(server.base + "/")
    expect(page.locator(BADGE)).to_have_text("Live · simulated")
    # `clear`: first put in the empty cell the server renders for a row it has no history for
    # (in the same task, so no live price lands in between).
    feed = """([symbol, n, clear]) => {
        if (clear) {
            const cell = document.querySelector(`td.spark[data-spark="${symbol}"]`);
            const empty = document.createElement('td');
            empty.className = cell.className;
            empty.dataset.spark = symbol;
            cell.replaceWith(empty);
        }
        const row = document.querySelector(`tr.quote[data-symbol="${symbol}"]`);
        const start = Number(row.dataset.time);
        for (let i = 1; i <= n; i += 1) {
            const next = row.cloneNode(true);
            next.querySelector('td.spark')?.remove();  // live rows carry none
            next.dataset.epoch = String(Number(row.dataset.epoch) + 10000);
            next.dataset.seq = String(i);
            next.dataset.time = String(start + i * 60000);
            next.dataset.price = (1000 + i).toFixed(2);
            window.stocktracker.ingest(next.outerHTML);
            window.stocktracker.flush();
        }
    }"""
    first = float(page.locator("td.spark[data-spark='TCS']").get_attribute("data-first") or 0)
    page.evaluate(feed, ["TCS", 150, False])
    page.evaluate(feed, ["INFY", 1, True])
    assert page.evaluate(POINTS_JS, "TCS") == MAX_POINTS
    tcs = page.locator("td.spark[data-spark='TCS'] > svg")
    pct = abs(1150 - first) / first * 100  # the simulated TCS trades near 3,150: down
    label = f"TCS today: from {first:,.2f} to 1,150.00, down {pct:.2f} %"
    expect(tcs).to_have_attribute("aria-label", label)
    expect(tcs).to_have_class("down")
    # The line's right end is the newest price, the lowest of the line's range but one.
    assert page.locator("td.spark[data-spark='TCS']").get_attribute("data-hi") != "1150"
    infy = page.locator("td.spark[data-spark='INFY'] > svg")
    expect(infy).to_have_attribute("aria-label", "INFY today: 1,001.00, the only price so far")
    assert page.evaluate(POINTS_JS, "INFY") == 1


def test_sparklines_shrink_on_phones_and_go_on_the_narrowest(page: Page, server: AppServer) -> None:
    page.set_viewport_size({"width": 600, "height": 800})
    page.goto(server.base + "/market")
    spark = page.locator("td.spark > svg").first
    box = spark.bounding_box()
    assert box is not None and round(box["width"]) == 52 and round(box["height"]) == 16, box
    screenshot(page, "sparklines-phone")
    page.set_viewport_size({"width": 380, "height": 800})
    expect(page.locator("td.spark").first).to_be_hidden()
    expect(page.locator("th.c-spark").first).to_be_hidden()
