"""Long-poll, the quotes API, health probes and the dashboard page over real HTTP."""

from __future__ import annotations

import base64
import re

import httpx
import orjson
import pytest

from app.settings import DEFAULT_WATCHLIST
from tests.support import AppServer


def poll(server: AppServer, symbols: str, cursor: str = "") -> httpx.Response:
    return httpx.get(
        f"{server.base}/api/poll", params={"symbols": symbols, "cursor": cursor}, timeout=30
    )


def test_long_poll_returns_at_once_then_waits_for_newer(app_server: AppServer) -> None:
    first = poll(app_server, "TCS,INFY")
    assert first.status_code == 200
    body = first.json()
    assert {q["symbol"] for q in body["quotes"]} == {"TCS", "INFY"}
    assert body["timeout"] is False and body["status"] == "live"
    seen = {q["symbol"]: q["seq"] for q in body["quotes"]}
    cursor = body["cursor"]
    updates = 0
    while updates < 3:
        body = poll(app_server, "TCS,INFY", cursor).json()
        for q in body["quotes"]:
            assert q["seq"] > seen[q["symbol"]], "long-poll returned something not newer"
            seen[q["symbol"]] = q["seq"]
            updates += 1
        cursor = body["cursor"]


def test_long_poll_times_out_with_nothing_new(app_server: AppServer) -> None:
    far_future = base64.urlsafe_b64encode(orjson.dumps([["TCS", 10**15, 0]])).decode()
    body = poll(app_server, "TCS", far_future).json()
    assert body["timeout"] is True and body["quotes"] == []


@pytest.mark.parametrize(
    ("path", "params", "code"),
    [
        ("/api/poll", {}, "missing_symbols"),
        ("/api/poll", {"symbols": "TCS", "cursor": "!!!"}, "bad_cursor"),
        ("/api/poll", {"symbols": "TCS", "cursor": "e30"}, "bad_cursor"),
        ("/api/poll", {"symbols": "TCS", "cursor": "W1sxLDIsM11d"}, "bad_cursor"),
        ("/api/poll", {"symbols": "<script>"}, "invalid_symbol"),
        ("/api/quotes", {"symbols": "TCS,,<b>"}, "invalid_symbol"),
        ("/api/quotes", {"symbols": "A,B,C,D,E,F"}, "too_many_symbols"),
    ],
)
def test_bad_query_parameters_are_400_with_a_json_error(
    app_server: AppServer, path: str, params: dict[str, str], code: str
) -> None:
    response = httpx.get(app_server.base + path, params=params, timeout=10)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]


def test_quotes_api(app_server: AppServer) -> None:
    body = httpx.get(f"{app_server.base}/api/quotes?symbols=TCS,infy,NOPE", timeout=10).json()
    assert [q["symbol"] for q in body["quotes"]] == ["TCS", "INFY"]
    assert body["rejected"][0]["symbol"] == "NOPE"
    assert body["interval"] == 0.2
    board = httpx.get(f"{app_server.base}/api/quotes", timeout=10).json()
    assert len(board["quotes"]) >= len(DEFAULT_WATCHLIST)


def test_health_and_ready(app_server: AppServer) -> None:
    health = httpx.get(f"{app_server.base}/health", timeout=1)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    ready = httpx.get(f"{app_server.base}/ready", timeout=1)
    assert ready.status_code == 200, ready.text
    assert ready.json()["details"]["backend"] == "memory"


def test_dashboard_has_prices_before_any_script_runs(app_server: AppServer) -> None:
    page = httpx.get(app_server.base + "/", timeout=10)
    assert page.status_code == 200
    html = page.text
    rows = dict(re.findall(r'data-symbol="([^"]+)" data-seq="(\d+)"', html))
    assert list(rows) == list(DEFAULT_WATCHLIST)
    assert all(int(seq) > 0 for seq in rows.values())
    prices = re.findall(r'<td class="num price" data-col="price">([^<]+)</td>', html)
    assert len(prices) == len(DEFAULT_WATCHLIST)
    assert all(re.fullmatch(r"[₹$][\d,]+\.\d\d", p) for p in prices), prices
    assert "simulated" in html
    assert '<script type="module" src="/static/app.js">' in html
    assert "/static/vendor/htmx-2.0.11.min.js" in html and "https://" not in html


def test_dashboard_follows_the_watchlist_cookie(app_server: AppServer) -> None:
    page = httpx.get(app_server.base + "/", cookies={"watchlist": "AAPL,<x>,NOPE,TCS"}, timeout=10)
    rows = re.findall(r'data-symbol="([^"]+)"', page.text)
    assert rows == ["AAPL", "TCS"]


def test_vendored_htmx_is_served(app_server: AppServer) -> None:
    response = httpx.get(f"{app_server.base}/static/vendor/htmx-2.0.11.min.js", timeout=10)
    assert response.status_code == 200 and len(response.content) > 1000
