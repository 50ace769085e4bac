"""The server-rendered pages in-process: real prices before any script, redirects, 404s, CSP."""

from __future__ import annotations

import re
from decimal import Decimal

from tests.fast.inprocess import wait_priced
from tests.unit.asgi import TestClient

ROW = re.compile(r'<tr id="q-[^"]+" class="quote ([a-z ]+)" data-symbol="([^"]+)"[^>]*'
                 r'data-price="([^"]*)"')  # fmt: skip


def rows(html: str) -> list[tuple[str, str, str]]:
    """(state class, symbol, data-price) of every quote row, in page order."""
    return [(cls, symbol, price) for cls, symbol, price in ROW.findall(html)]


def test_the_dashboard_shows_the_default_watchlist_priced_in_its_order(client: TestClient) -> None:
    default = ["RELIANCE", "TCS", "INFY", "HDFCBANK", "NIFTY 50", "AAPL", "MSFT"]
    wait_priced(client, *default[:5])
    wait_priced(client, *default[5:])
    response = client.get("/")
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
    found = rows(response.text)
    assert [symbol for _, symbol, _ in found] == default
    for cls, symbol, price in found:
        assert cls.split()[0] in ("up", "down", "flat"), (symbol, cls)
        assert Decimal(price) > 0
    # Remove buttons are page-only cells, one per row.
    assert response.text.count('class="actions"') == len(default)


def test_every_response_carries_the_content_security_policy(client: TestClient) -> None:
    for path in ("/", "/market", "/stock/TCS", "/api/quotes", "/static/app.css", "/nowhere"):
        csp = client.get(path).headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp, path
        assert "frame-ancestors 'none'" in csp


def test_the_market_page_splits_indices_from_equities(client: TestClient) -> None:
    html = client.get("/market").text
    indices = html[html.index('id="indices-title"') : html.index('id="equities-title"')]
    equities = html[html.index('id="equities-title"') :]
    # Five per connection (MAX_SYMBOLS_PER_CONNECTION): the first five board symbols.
    shown = [s for _, s, _ in rows(indices)] + [s for _, s, _ in rows(equities)]
    assert len(shown) == 5 and len(set(shown)) == 5
    assert "NIFTY 50" in [s for _, s, _ in rows(indices)]
    assert not {"TCS", "RELIANCE"} & {s for _, s, _ in rows(indices)}


def test_the_stock_page_has_its_quote_and_a_chart(client: TestClient) -> None:
    wait_priced(client, "TCS")
    response = client.get("/stock/TCS")
    assert response.status_code == 200
    [(cls, symbol, price)] = rows(response.text)
    assert symbol == "TCS" and Decimal(price) > 0
    chart = re.search(r'<svg id="chart"[^>]*data-count="(\d+)"', response.text)
    assert chart is not None and int(chart.group(1)) >= 1
    assert 'aria-label="TCS price chart"' in response.text


def test_stock_urls_have_one_canonical_form(client: TestClient) -> None:
    moved = client.get("/stock/tcs", follow_redirects=False)
    assert (moved.status_code, moved.headers["location"]) == (308, "/stock/TCS")
    search = client.get("/stock?symbol= nifty 50 ", follow_redirects=False)
    assert (search.status_code, search.headers["location"]) == (303, "/stock/NIFTY%2050")
    nothing = client.get("/stock?symbol=", follow_redirects=False)
    assert (nothing.status_code, nothing.headers["location"]) == (303, "/market")


def test_unknown_and_invalid_stocks_and_paths_are_html_404s(client: TestClient) -> None:
    for path, words in [
        ("/stock/NOPE", "No stock “NOPE” here"),
        ("/stock/b%40d", "is not a symbol"),
        ("/nowhere", "There is no page at /nowhere."),
    ]:
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"].startswith("text/html")
        assert words in response.text, (path, response.text[-500:])


def test_a_user_supplied_path_is_escaped_in_the_404_page(client: TestClient) -> None:
    response = client.get("/stock/%3Cscript%3E")
    assert response.status_code == 404
    assert "<script>" not in response.text and "&lt;script&gt;" in response.text


def test_static_files_are_served(client: TestClient) -> None:
    response = client.get("/static/app.js")
    assert response.status_code == 200 and "javascript" in response.headers["content-type"]
    assert client.get("/static/vendor/htmx-2.0.11.min.js").status_code == 200
    assert client.get("/static/nope.js").status_code == 404


def test_the_404_page_has_no_badge_and_no_live_script(client: TestClient) -> None:
    response = client.get("/stock/NOPE")
    assert response.status_code == 404
    assert 'id="conn"' not in response.text and "app.js" not in response.text
    stock = client.get("/stock/TCS").text  # a page with a quote keeps both
    assert 'id="conn"' in stock and "app.js" in stock


def test_the_stock_page_offers_to_add_it_to_the_watchlist(client: TestClient) -> None:
    wait_priced(client, "NVDA")
    client.cookies.set("watchlist", "TCS")  # room for one more (this client allows 5)
    page = client.get("/stock/NVDA").text
    form = re.search(r'<form class="watch-add" method="post" action="/watchlist">(.*?)</form>',
                     page, re.S)  # fmt: skip
    assert form is not None and 'name="symbol" value="NVDA"' in form.group(1)
    # What the form posts, as a browser would (the client keeps the cookie the answer sets).
    added = client.post(
        "/watchlist", content="symbol=NVDA", follow_redirects=False,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )  # fmt: skip
    assert (added.status_code, added.headers["location"]) == (303, "/")
    page = client.get("/stock/NVDA").text
    assert 'class="watch-add"' not in page and "On your watchlist" in page


def test_the_chart_has_a_time_axis_in_the_exchanges_zone(client: TestClient) -> None:
    wait_priced(client, "TCS")
    page = client.get("/stock/TCS").text
    axis = re.search(
        r'<span id="chart-start">(\d\d:\d\d(?::\d\d)?)</span>'
        r'<span id="chart-mid">(\d\d:\d\d(?::\d\d)?)</span>'
        r'<span id="chart-end">(\d\d:\d\d(?::\d\d)?) IST</span>',
        page,
    )
    assert axis is not None, page[page.find("chart-scale") :][:400]
    assert 'data-zone="Asia/Kolkata"' in page
