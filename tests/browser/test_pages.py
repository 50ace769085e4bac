"""The three pages in a real browser: live prices, badge, watchlist, flash, board, chart, order."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.browser.conftest import prices, screenshot, wait_for_moves
from tests.support import AppServer

BADGE = "#conn .badge-label"


def test_dashboard_shows_prices_turns_live_and_prices_move(page: Page, server: AppServer) -> None:
    page.goto(server.base + "/")
    before = prices(page)
    assert len(before) == 7 and all(before.values()), before  # server-rendered, before any frame
    expect(page.locator(BADGE)).to_have_text("Live · simulated")
    expect(page.locator("#conn .badge-via")).to_have_text("WebSocket")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    wait_for_moves(page, before, at_least=2, timeout=10)
    page.locator("#conn").hover()
    expect(page.locator("#conn-tip")).to_be_visible()
    expect(page.locator('[data-tip="transport"]')).to_have_text("WebSocket")
    expect(page.locator('[data-tip="latency"]')).to_have_text(re.compile(r"^\d+ ms$"))
    expect(page.locator('[data-tip="updated"]')).to_have_text(re.compile(r"\d\d:\d\d:\d\d"))
    expect(page.locator('[data-tip="source"]')).to_have_text("simulated")
    page.mouse.move(0, 400)
    screenshot(page, "dashboard")


def test_watchlist_add_remove_persist_and_unknown_symbol_error(
    page: Page, server: AppServer
) -> None:
    page.goto(server.base + "/")
    expect(page.locator(BADGE)).to_have_text("Live · simulated")
    page.get_by_label("Add a symbol").fill("wipro")
    page.get_by_role("button", name="Add", exact=True).click()
    row = page.locator('tr.quote[data-symbol="WIPRO"]')
    expect(row).to_have_count(1)
    expect(page.locator("#watchlist-message")).to_have_text("Added WIPRO.")
    # The new row was priced by the server and then goes live on the resubscribed connection.
    first_seq = int(row.get_attribute("data-seq") or "0")
    assert first_seq > 0
    page.wait_for_function(
        "s => Number(document.querySelector('tr[data-symbol=\"WIPRO\"]').dataset.seq) > s",
        arg=first_seq,
    )
    page.reload()
    expect(page.locator('tr.quote[data-symbol="WIPRO"]')).to_have_count(1)

    page.get_by_label("Add a symbol").fill("NOPE")
    page.get_by_role("button", name="Add", exact=True).click()
    message = page.locator("#watchlist-message")
    expect(message).to_have_text(re.compile("Unknown symbol “NOPE”"))
    expect(message).to_have_attribute("role", "alert")
    expect(page.get_by_label("Add a symbol")).to_have_attribute("aria-invalid", "true")
    screenshot(page, "dashboard-error")

    page.get_by_role("button", name="Remove WIPRO from the watchlist").click()
    expect(page.locator('tr.quote[data-symbol="WIPRO"]')).to_have_count(0)
    expect(message).to_have_text("Removed WIPRO.")
    page.reload()
    expect(page.locator('tr.quote[data-symbol="WIPRO"]')).to_have_count(0)
    expect(page.locator("table[data-live] tr.quote")).to_have_count(7)


def test_a_price_change_flashes_with_an_arrow(page: Page, server: AppServer) -> None:
    page.goto(server.base + "/")
    flashed = page.locator("td.price.flash-up .arrow-up, td.price.flash-down .arrow-down")
    expect(flashed.first).to_be_visible()
    cell = page.locator("td.price.flash-up, td.price.flash-down").first
    assert cell.evaluate("el => getComputedStyle(el).animationName") in ("flash-up", "flash-down")


def test_reduced_motion_keeps_the_arrow_but_drops_the_animation(
    page: Page, server: AppServer
) -> None:
    page.emulate_media(reduced_motion="reduce")
    page.goto(server.base + "/")
    cell = page.locator("td.price.flash-up, td.price.flash-down").first
    expect(cell.locator(".arrow")).to_have_count(1)
    assert cell.evaluate("el => getComputedStyle(el).animationName") == "none"


def test_an_older_seq_is_ignored_and_a_newer_one_applied(page: Page, server: AppServer) -> None:
    page.goto(server.base + "/stock/TCS")
    expect(page.locator(BADGE)).to_have_text("Live · simulated")
    row = page.locator("#q-TCS")
    fake = """([delta, text]) => {
        const row = document.getElementById('q-TCS').cloneNode(true);
        row.dataset.seq = String(Number(row.dataset.seq) + delta);
        row.querySelector('[data-col="price"]').textContent = text;
        window.stocktracker.ingest(row.outerHTML);
        window.stocktracker.flush();
        return window.stocktracker.ignored();
    }"""
    ignored_before = page.evaluate("window.stocktracker.ignored()")
    assert page.evaluate(fake, [-1, "OLDER"]) > ignored_before
    assert page.evaluate(fake, [0, "SAME"]) > ignored_before + 1
    assert "OLDER" not in row.inner_text() and "SAME" not in row.inner_text()
    # A later fetcher term (epoch) wins even with a lower seq.
    page.evaluate(
        """() => {
        const row = document.getElementById('q-TCS').cloneNode(true);
        row.dataset.epoch = String(Number(row.dataset.epoch) + 1);
        row.dataset.seq = '1';
        row.querySelector('[data-col="price"]').textContent = 'NEWER';
        window.stocktracker.ingest(row.outerHTML);
        window.stocktracker.flush();
    }"""
    )
    expect(row.locator('[data-col="price"]')).to_contain_text("NEWER")


def test_market_closed_shows_in_badge_and_cells(page: Page, server: AppServer) -> None:
    page.goto(server.base + "/stock/INFY")
    expect(page.locator(BADGE)).to_have_text("Live · simulated")
    page.evaluate(
        """() => {
        const row = document.getElementById('q-INFY').cloneNode(true);
        row.dataset.epoch = String(Number(row.dataset.epoch) + 1);
        row.dataset.market = 'closed';
        row.dataset.time = String(Date.now() - 3600 * 1000);
        row.classList.add('closed');
        row.querySelector('[data-col="time"]').innerHTML +=
            ' <span class="tag tag-closed">Closed</span>';
        window.stocktracker.ingest(row.outerHTML);
        window.stocktracker.flush();
    }"""
    )
    expect(page.locator(BADGE)).to_have_text("Market closed · simulated")
    expect(page.locator("#q-INFY .tag-closed")).to_have_text("Closed")


def test_market_board_sorts_and_movers_rerank(page: Page, server: AppServer) -> None:
    page.goto(server.base + "/market")
    expect(page.locator(BADGE)).to_have_text("Live · simulated")
    assert page.locator("table[data-live] tr.quote").count() >= 19
    expect(page.locator("table[data-live] tr.quote.pending")).to_have_count(0)
    equities = page.locator("table[aria-labelledby='equities-title']")
    header = equities.locator("th", has=page.locator("button[data-sort='pct']"))
    header.get_by_role("button").focus()
    page.keyboard.press("Enter")
    expect(header).to_have_attribute("aria-sort", "descending")
    order_js = """t => [...t.tBodies[0].rows].map(r => parseFloat(r.dataset.pct))"""
    # Sorted now, and still sorted after live updates have moved prices.
    before = prices(page)
    wait_for_moves(page, before, at_least=5, timeout=10)
    pcts = equities.evaluate(order_js)
    assert pcts == sorted(pcts, reverse=True), pcts
    page.keyboard.press("Enter")
    expect(header).to_have_attribute("aria-sort", "ascending")
    pcts = equities.evaluate(order_js)
    assert pcts == sorted(pcts), pcts
    # The movers follow the equities board (indices are not ranked among them): top gainer is
    # its largest positive change.
    page.wait_for_function(
        """() => {
        const rows = [...document.querySelectorAll('table[data-board="equities"] tr.quote[id]')];
        const best = rows.reduce((a, b) => parseFloat(b.dataset.pct) > parseFloat(a.dataset.pct)
                                            ? b : a);
        const top = document.querySelector('#gainers tbody tr');
        if (parseFloat(best.dataset.pct) <= 0) return top.textContent.includes('No gainers');
        return top.dataset.symbol === best.dataset.symbol;
    }"""
    )
    screenshot(page, "market")


def test_movers_rank_equities_only(page: Page, server: AppServer) -> None:
    # An index jumping 9 % must not top the equities' gainers; an equity doing so must.
    page.goto(server.base + "/market")
    expect(page.locator(BADGE)).to_have_text("Live · simulated")
    jump = """symbol => {
        const row = document.getElementById(symbol).cloneNode(true);
        row.dataset.epoch = String(Number(row.dataset.epoch) + 1000);
        row.dataset.pct = '9.00';
        row.querySelector('[data-col="pct"]').textContent = '+9.00%';
        window.stocktracker.ingest(row.outerHTML);
        window.stocktracker.flush();
    }"""
    page.evaluate(jump, "q-NIFTY_2050")
    expect(page.locator("#q-NIFTY_2050 [data-col='pct']")).to_have_text("+9.00%")
    expect(page.locator("#gainers tr[data-symbol='NIFTY 50']")).to_have_count(0)
    page.evaluate(jump, "q-TCS")
    expect(page.locator("#gainers tbody tr").first).to_have_attribute("data-symbol", "TCS")
    expect(page.locator("#gainers tr[data-symbol='NIFTY 50']")).to_have_count(0)


def test_stock_chart_gains_points_and_404(page: Page, server: AppServer) -> None:
    page.goto(server.base + "/stock/NVDA")
    chart = page.locator("#chart")
    # The server drew the recent history it has recorded since it started (at least one point).
    served = int(chart.get_attribute("data-count") or "0")
    assert served >= 1
    expect(page.locator(BADGE)).to_have_text("Live · simulated")
    page.wait_for_function(
        "n => Number(document.getElementById('chart').dataset.count) >= n", arg=served + 3
    )
    points = chart.locator("polyline.line").get_attribute("points") or ""
    assert len(points.split()) >= served + 3
    expect(page.locator(".big-price")).to_have_text(re.compile(r"^\$[\d,]+\.\d\d$"))
    expect(page.locator("#age")).to_have_text(re.compile(r"^\d+ s$"))
    screenshot(page, "stock")
    response = page.goto(server.base + "/stock/NOPE")
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    screenshot(page, "not-found")


def test_delayed_when_the_server_says_so(page: Page, server: AppServer) -> None:
    page.goto(server.base + "/stock/AAPL")
    expect(page.locator(BADGE)).to_have_text("Live · simulated")
    status = """s => window.stocktracker.ingest(
        `<span id="feed-status" hx-swap-oob="true" class="status status-${s}">x</span>`)"""
    page.evaluate(status, "delayed")
    expect(page.locator(BADGE)).to_have_text("Delayed · simulated")
    expect(page.locator("#conn")).to_have_attribute("data-state", "delayed")
    page.evaluate(status, "live")
    expect(page.locator(BADGE)).to_have_text("Live · simulated")
    # Its toast is not checked here (toasts wait until a new link has settled, 3 s), nor a quiet
    # symbol's old price staying Live: tests/browser/test_freshness.py checks both for real.


def test_a_burst_is_applied_in_one_batch(page: Page, server: AppServer) -> None:
    page.goto(server.base + "/market")
    expect(page.locator(BADGE)).to_have_text("Live · simulated")
    applied_at_once = page.evaluate(
        """() => {
        const ids = ['q-TCS', 'q-INFY', 'q-AAPL', 'q-NIFTY_2050'];
        for (const id of ids) {
            const row = document.getElementById(id).cloneNode(true);
            row.dataset.epoch = String(Number(row.dataset.epoch) + 1);
            row.querySelector('[data-col="price"]').textContent = 'BURST';
            window.stocktracker.ingest(row.outerHTML);
        }
        // Nothing touches the DOM synchronously: the burst waits for the batch.
        return ids.filter(id => document.getElementById(id).textContent.includes('BURST')).length;
    }"""
    )
    assert applied_at_once == 0
    page.wait_for_function(
        """() => window.stocktracker.batches().some(b =>
            ['q-TCS', 'q-INFY', 'q-AAPL', 'q-NIFTY_2050'].every(id => b.includes(id)))"""
    )
    expect(page.locator("#q-TCS [data-col=price]")).to_contain_text("BURST")
    # The polite summary exists; the only other live regions are the toasts and the notice that
    # the prices are simulated (which changes only when the page's sources do).
    expect(page.locator("#summary")).to_have_text(re.compile(r"^\d+ symbols: \d+ up, \d+ down"))
    assert page.locator("[aria-live]").count() == 3


def test_an_empty_watchlist_stays_live_and_a_first_symbol_streams(
    page: Page, server: AppServer
) -> None:
    page.context.add_cookies([{"name": "watchlist", "value": '""', "url": server.base}])
    page.goto(server.base + "/")
    expect(page.locator("tr.empty")).to_contain_text("Your watchlist is empty")
    expect(page.locator(BADGE)).to_have_text("Live")  # no price on the page: none simulated
    page.get_by_label("Add a symbol").fill("M&M")
    page.keyboard.press("Enter")
    row = page.locator('tr.quote[data-symbol="M&M"]')
    expect(row).to_have_count(1)
    seq = int(row.get_attribute("data-seq") or "0")
    page.wait_for_function(
        "s => Number(document.querySelector('tr[data-symbol=\"M&M\"]').dataset.seq) > s", arg=seq
    )
