"""The pages over real HTTP: prices before any script, the watchlist forms, 404s, CSP, html poll."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from app.security import CONTENT_SECURITY_POLICY
from app.settings import DEFAULT_BOARD
from tests.support import AppServer


@pytest.fixture(scope="module")
def app_server() -> Iterator[AppServer]:
    """Default limits (the shared e2e server allows only 5 symbols, too few for the board)."""
    server = AppServer({"POLL_TIMEOUT": "1"})
    server.start()
    yield server
    server.stop()


PRICE = re.compile(r'<td class="num price" data-col="price">([^<]+)</td>')


def client(server: AppServer) -> httpx.Client:
    return httpx.Client(base_url=server.base, timeout=10, follow_redirects=False)


def test_every_page_sends_a_strict_content_security_policy(app_server: AppServer) -> None:
    with client(app_server) as http:
        for path in ("/", "/market", "/stock/TCS", "/stock/NOPE", "/static/app.css"):
            response = http.get(path)
            assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path
            assert "script-src 'self';" in CONTENT_SECURITY_POLICY
            if response.headers["content-type"].startswith("text/html"):
                assert "<script>" not in response.text and " on" + "click=" not in response.text


def test_market_board_has_prices_and_movers_before_any_script(app_server: AppServer) -> None:
    with client(app_server) as http:
        html = http.get("/market").text
    prices = PRICE.findall(html)
    assert len(prices) == len(DEFAULT_BOARD), len(prices)
    assert all(re.fullmatch(r"[₹$][\d,]+\.\d\d", p) for p in prices)
    assert 'id="gainers"' in html and 'id="losers"' in html
    assert 'data-symbol="NIFTY 50"' in html and 'data-sort="pct"' in html


def test_stock_page_and_its_404s(app_server: AppServer) -> None:
    with client(app_server) as http:
        page = http.get("/stock/NIFTY%2050")
        assert page.status_code == 200
        assert 'data-symbol="NIFTY 50"' in page.text and 'id="chart"' in page.text
        assert re.search(r'class="big-price" data-bind="price">₹[\d,]+\.\d\d<', page.text)
        for path in ("/stock/NOPE", "/stock/%3Cx%3E", "/no/such/page"):
            missing = http.get(path)
            assert missing.status_code == 404, path
            assert missing.headers["content-type"].startswith("text/html")
            assert "Not found" in missing.text and "<x>" not in missing.text
        assert http.get("/stock?symbol=tcs").headers["location"] == "/stock/TCS"
        canonical = http.get("/stock/%20m%26m")
        assert canonical.status_code == 308 and canonical.headers["location"] == "/stock/M%26M"


def test_watchlist_forms_work_without_javascript(app_server: AppServer) -> None:
    with client(app_server) as http:
        added = http.post("/watchlist", data={"symbol": " nifty bank "})
        assert added.status_code == 303 and added.headers["location"] == "/"
        page = http.get("/").text
        symbols = re.findall(r'data-symbol="([^"]+)" data-seq', page)
        assert symbols[-1] == "NIFTY BANK" and len(symbols) == 8
        unknown = http.post("/watchlist", data={"symbol": "NOPE"})
        assert unknown.status_code == 422
        assert "Unknown symbol “NOPE”" in unknown.text and 'aria-invalid="true"' in unknown.text
        removed = http.post("/watchlist/NIFTY%20BANK/remove")
        assert removed.status_code == 303
        assert 'data-symbol="NIFTY BANK"' not in http.get("/").text


def test_watchlist_htmx_requests_get_the_partial(app_server: AppServer) -> None:
    with client(app_server) as http:
        http.cookies.set("watchlist", "TCS")
        headers = {"HX-Request": "true"}
        added = http.post("/watchlist", data={"symbol": "wipro"}, headers=headers)
        assert added.status_code == 200 and added.text.startswith('<section id="watchlist"')
        assert "Added WIPRO." in added.text
        assert re.findall(r'data-symbol="([^"]+)" data-seq', added.text) == ["TCS", "WIPRO"]
        bad = http.post("/watchlist", data={"symbol": "<b>"}, headers=headers)
        assert "is not a valid symbol" in bad.text and "<b>" not in bad.text
        emptied = http.delete("/watchlist/TCS", headers=headers)
        emptied = http.delete("/watchlist/WIPRO", headers=headers)
        assert "Your watchlist is empty" in emptied.text
        # An emptied watchlist stays empty; it does not fall back to the default.
        assert "Your watchlist is empty" in http.get("/").text


def test_long_poll_html_format_uses_the_row_partial(app_server: AppServer) -> None:
    with client(app_server) as http:
        body = http.get("/api/poll", params={"symbols": "TCS", "format": "html"}).json()
        assert "quotes" not in body and body["cursor"]
        assert body["html"].startswith('<tr id="q-TCS" hx-swap-oob="true"')
        assert PRICE.search(body["html"])
        bad = http.get("/api/poll", params={"symbols": "TCS", "format": "xml"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_format"
