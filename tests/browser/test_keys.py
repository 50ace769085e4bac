"""Keyboard-first pages in real Chromium (static/js/keys.js): every shortcut, none while typing,
the focused row kept across live updates, re-sorts and re-renders, and undo of `x`."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.browser.conftest import screenshot
from tests.support import AppServer

FOCUSED_JS = """() => {
    const el = document.activeElement;
    return el && el.matches('tr[data-symbol]') ? el.dataset.symbol : null;
}"""
FOCUSED_ON_JS = """symbol => {
    const el = document.activeElement;
    return el !== null && el.matches('tr[data-symbol]') && el.dataset.symbol === symbol;
}"""


def watch(page: Page, server: AppServer, symbols: str) -> None:
    page.context.add_cookies([{"name": "watchlist", "value": symbols, "url": server.base}])
    page.goto(server.base + "/")
    expect(page.locator("#watchlist tr.quote")).to_have_count(len(symbols.split(",")))


def focused(page: Page) -> str | None:
    symbol: str | None = page.evaluate(FOCUSED_JS)
    return symbol


def focus_row(page: Page, symbol: str, table: str = "") -> None:
    """Press j until the row of `symbol` (in `table`, a CSS selector) has the focus."""
    target = f'{table} tr[data-symbol="{symbol}"]'.strip()
    for _ in range(80):
        if page.evaluate("s => document.activeElement === document.querySelector(s)", target):
            return
        page.keyboard.press("j")
    raise AssertionError(f"j never reached {target}")


def test_j_k_move_between_rows_with_visible_focus_and_enter_opens(
    page: Page, server: AppServer
) -> None:
    watch(page, server, "TCS,INFY,AAPL")
    assert focused(page) is None
    page.keyboard.press("j")
    assert focused(page) == "TCS"
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("j")  # stays on the last row
    assert focused(page) == "AAPL"
    page.keyboard.press("k")
    assert focused(page) == "INFY"
    row = page.locator('#watchlist tr[data-symbol="INFY"]')
    assert row.evaluate("r => r.matches(':focus-visible')")
    outline = row.evaluate(
        "r => `${getComputedStyle(r).outlineStyle} ${getComputedStyle(r).outlineWidth}`"
    )
    assert outline == "solid 3px", outline
    screenshot(page, "keys-row-focus")
    page.keyboard.press("Enter")
    expect(page).to_have_url(server.base + "/stock/INFY")


def test_slash_focuses_the_search_and_nothing_fires_while_typing(
    page: Page, server: AppServer
) -> None:
    watch(page, server, "TCS,INFY")
    page.keyboard.press("/")
    field = page.locator("#add-symbol")
    expect(field).to_be_focused()
    expect(field).to_have_attribute("aria-keyshortcuts", "/")
    expect(field).to_have_value("")  # the slash focused, it was not typed
    page.keyboard.type("jkxa?gm/")
    expect(field).to_have_value("jkxa?gm/")
    assert focused(page) is None
    expect(page.locator("#shortcuts")).not_to_be_visible()
    expect(page).to_have_url(server.base + "/")
    # Other fields too: a select, a textarea, a contenteditable element.
    page.evaluate("""() => {
        const box = document.createElement('div');
        box.innerHTML = '<select id="t-sel"><option>j</option></select><textarea id="t-area">'
            + '</textarea><div id="t-edit" contenteditable="true">x</div>';
        document.querySelector('main').append(box);
    }""")
    for target in ("#t-sel", "#t-area", "#t-edit"):
        page.locator(target).focus()
        for key in ("j", "x", "?", "/"):
            page.keyboard.press(key)
        assert focused(page) is None, target
        expect(page.locator("#shortcuts")).not_to_be_visible()
    expect(page.locator("#watchlist tr.quote")).to_have_count(2)  # no x removed anything
    # With Ctrl, Meta or Alt held, the keys are the browser's, not ours.
    page.locator("#t-edit").evaluate("e => e.blur()")
    for key in ("Alt+j", "Control+j", "Meta+j", "Alt+Shift+Slash"):
        page.keyboard.press(key)
    assert focused(page) is None
    expect(page.locator("#shortcuts")).not_to_be_visible()
    # Esc leaves the search; on a page without the add field `/` is the header's search.
    page.goto(server.base + "/market")
    page.keyboard.press("/")
    expect(page.locator("#lookup-symbol")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.locator("#lookup-symbol")).not_to_be_focused()


def test_g_w_and_g_m_go_to_the_pages(page: Page, server: AppServer) -> None:
    page.goto(server.base + "/stock/TCS")
    page.keyboard.press("g")
    page.keyboard.press("m")
    expect(page).to_have_url(server.base + "/market")
    page.wait_for_load_state()  # the URL changes before the new page's scripts have run
    page.keyboard.press("g")
    page.keyboard.press("w")
    expect(page).to_have_url(server.base + "/")
    page.wait_for_load_state()
    documents: list[str] = []
    page.on("request", lambda r: documents.append(r.url) if r.is_navigation_request() else None)
    page.keyboard.press("w")  # w or m alone is nothing
    page.keyboard.press("m")
    with page.expect_navigation():  # a later navigation: any earlier one would come first
        page.keyboard.press("g")
        page.keyboard.press("w")
    assert documents == [server.base + "/"], documents


def test_question_mark_opens_an_accessible_dialog_that_esc_closes(
    page: Page, server: AppServer
) -> None:
    watch(page, server, "TCS,INFY")
    page.keyboard.press("j")
    page.keyboard.press("?")
    dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("button", name="Close")).to_be_focused()
    expect(dialog).to_contain_text("Remove the focused watchlist row")
    screenshot(page, "keys-shortcuts-dialog")
    page.keyboard.press("j")  # no shortcut behind the modal dialog
    page.keyboard.press("x")
    page.keyboard.press("Escape")
    expect(dialog).not_to_be_visible()
    assert focused(page) == "TCS"  # focus is back where it was
    expect(page.locator("#watchlist tr.quote")).to_have_count(2)
    # The header's ? button opens it too, and Close closes it.
    page.get_by_role("button", name="Keyboard shortcuts").click()
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).not_to_be_visible()


def test_a_adds_the_focused_board_row_or_the_searched_symbol(page: Page, server: AppServer) -> None:
    page.context.add_cookies([{"name": "watchlist", "value": "TCS", "url": server.base}])
    page.goto(server.base + "/market")
    focus_row(page, "INFY", 'table[data-board="equities"]')
    page.keyboard.press("a")
    expect(page.locator("#toasts")).to_contain_text("Added INFY.")
    # The header's search, left with Esc: `a` adds what it holds (checked by the server).
    page.keyboard.press("/")
    page.keyboard.type("nope")
    page.keyboard.press("Escape")
    page.keyboard.press("a")
    expect(page.locator("#toasts")).to_contain_text("Unknown symbol “NOPE”")
    # On a stock page, its own symbol.
    page.goto(server.base + "/stock/AAPL")
    page.keyboard.press("a")
    expect(page.locator("#toasts")).to_contain_text("Added AAPL.")
    expect(page.get_by_role("link", name="✓ On your watchlist")).to_be_visible()
    # On the dashboard, through its own add form.
    page.goto(server.base + "/")
    expect(page.locator("#watchlist tr.quote")).to_have_count(3)
    assert [s for s in page.locator("#watchlist tr.quote").evaluate_all(
        "rows => rows.map(r => r.dataset.symbol)")] == ["TCS", "INFY", "AAPL"]  # fmt: skip
    page.keyboard.press("/")
    page.keyboard.type("wipro")
    page.keyboard.press("Escape")
    page.keyboard.press("a")
    expect(page.locator("#watchlist-message")).to_have_text("Added WIPRO.")
    expect(page.locator('#watchlist tr[data-symbol="WIPRO"]')).to_have_count(1)
    # A watchlist row is there already: with nothing typed, `a` says what it needs.
    page.keyboard.press("j")
    page.keyboard.press("a")
    expect(page.locator("#toasts")).to_contain_text("Nothing to add")


def test_x_removes_the_focused_row_and_undo_puts_it_back(page: Page, server: AppServer) -> None:
    watch(page, server, "TCS,INFY,AAPL")
    page.keyboard.press("j")
    page.keyboard.press("j")
    assert focused(page) == "INFY"
    page.keyboard.press("x")
    expect(page.locator('#watchlist tr[data-symbol="INFY"]')).to_have_count(0)
    expect(page.locator("#watchlist-message")).to_have_text("Removed INFY.")
    page.wait_for_function(FOCUSED_ON_JS, arg="AAPL")  # the row now at its place
    undo = page.locator("#toasts").get_by_role("button", name="Undo")
    expect(undo).to_be_visible()
    expect(page.locator("#toasts")).to_contain_text("Removed INFY.")
    screenshot(page, "keys-undo-toast")
    page.keyboard.press("u")
    expect(page.locator('#watchlist tr[data-symbol="INFY"]')).to_have_count(1)
    expect(page.locator("#watchlist-message")).to_have_text("Added INFY.")
    # Back at its place, not at the end.
    rows = page.locator("#watchlist tr.quote")
    assert [rows.nth(i).get_attribute("data-symbol") for i in range(3)] == ["TCS", "INFY", "AAPL"]
    expect(undo).to_have_count(0)
    page.keyboard.press("u")  # one undo per removal
    expect(page.locator("#watchlist tr.quote")).to_have_count(3)
    # The toast's button, reached and pressed from the keyboard.
    page.wait_for_function(FOCUSED_ON_JS, arg="AAPL")
    page.keyboard.press("x")
    expect(page.locator('#watchlist tr[data-symbol="AAPL"]')).to_have_count(0)
    undo.focus()
    page.keyboard.press("Enter")
    expect(page.locator('#watchlist tr[data-symbol="AAPL"]')).to_have_count(1)
    page.reload()  # the cookie has it too
    expect(page.locator("#watchlist tr.quote")).to_have_count(3)
    # x on a row that is not the watchlist's removes nothing.
    page.goto(server.base + "/market")
    page.keyboard.press("j")
    page.keyboard.press("x")
    expect(page.locator("#toasts")).to_contain_text("Nothing to remove")


def test_the_focused_row_keeps_focus_across_live_updates(page: Page, server: AppServer) -> None:
    watch(page, server, "TCS,INFY")
    page.keyboard.press("j")
    row = page.locator('#watchlist tr[data-symbol="TCS"]')
    before = row.get_attribute("data-seq")
    # Live merges into the row (prices move every 0.3 s).
    page.wait_for_function(
        "seq => document.querySelector('#watchlist tr[data-symbol=\"TCS\"]').dataset.seq !== seq",
        arg=before,
    )
    assert focused(page) == "TCS"
    # A row replaced whole by a server-rendered <tr> (as an out-of-band swap would).
    page.evaluate("""() => {
        const row = document.querySelector('#watchlist tr[data-symbol="TCS"]');
        const fresh = row.cloneNode(true);
        fresh.removeAttribute('tabindex');
        row.replaceWith(fresh);
    }""")
    assert focused(page) == "TCS"
    assert page.evaluate("() => document.activeElement.isConnected")
    page.keyboard.press("j")
    assert focused(page) == "INFY"
    # A link in a row keeps the focus too, though every update re-renders its cell.
    link = page.locator('#watchlist tr[data-symbol="INFY"] a.sym')
    link.focus()
    old = link.element_handle()
    page.wait_for_function("el => !el.isConnected", arg=old)
    expect(link).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(server.base + "/stock/INFY")


def test_focus_follows_its_row_as_the_board_resorts_and_movers_rerank(
    page: Page, server: AppServer
) -> None:
    page.goto(server.base + "/market")
    board = page.locator('table[data-board="equities"]')
    board.get_by_role("button", name="Change %").click()
    order_js = """() => [...document.querySelectorAll('table[data-board="equities"] tbody tr')]
        .map(r => r.dataset.symbol).join()"""
    focus_row(page, "INFY", 'table[data-board="equities"]')
    for _ in range(3):  # a few re-sorts, each moving every row of the board
        order = page.evaluate(order_js)
        page.wait_for_function(f"o => ({order_js})() !== o", arg=order)
        assert page.evaluate(
            "() => document.activeElement.closest('table').dataset.board"
        ) == "equities"  # fmt: skip
        assert focused(page) == "INFY"
    # The movers lists are rendered anew with every batch.
    page.evaluate("() => document.activeElement.blur()")
    page.keyboard.press("j")  # from nowhere: the first row, the top gainer
    assert page.evaluate("() => document.activeElement.closest('#gainers') !== null")
    page.wait_for_function(
        "el => !el.isConnected", arg=page.evaluate_handle("() => document.activeElement")
    )
    assert page.evaluate("() => document.activeElement.closest('#gainers') !== null")
    assert focused(page) is not None


def test_the_csv_link_downloads_the_watchlist(page: Page, server: AppServer) -> None:
    watch(page, server, "TCS,AAPL")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    got = download.value
    assert re.fullmatch(r"watchlist-\d{4}-\d\d-\d\d\.csv", got.suggested_filename)
    path = got.path()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == (
        "symbol,name,price,change,change_pct,currency,exchange,source,source_time,age_seconds"
    )
    assert [line.split(",")[0] for line in lines[1:]] == ["TCS", "AAPL"]
    tcs = lines[1].split(",")
    assert re.fullmatch(r"\d+\.\d+", tcs[2]) and tcs[5] == "INR"
    assert tcs[8].endswith("+05:30")
