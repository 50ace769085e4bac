"""`/api/quotes` and the long-poll `/api/poll` in-process: answers, cursors, and 400s."""

from __future__ import annotations

import base64
import time
from decimal import Decimal

import orjson
import pytest

from tests.fast.inprocess import wait_priced
from tests.unit.asgi import TestClient

QUOTE_FIELDS = {
    "symbol", "price", "change", "change_pct", "open", "high", "low", "prev_close", "volume",
    "currency", "exchange", "name", "source", "source_time", "market_open", "seq", "epoch",
    "published_at",
}  # fmt: skip


def test_quotes_answers_known_symbols_and_reports_unknown_ones(client: TestClient) -> None:
    wait_priced(client, "TCS", "AAPL")
    response = client.get("/api/quotes?symbols=tcs,AAPL,NOPE")
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["status"] == "live" and body["interval"] == 0.2
    assert body["feed_status"]["state"] == "live"
    assert body["missing"] == []
    assert [(r["symbol"], r["code"]) for r in body["rejected"]] == [("NOPE", "unknown_symbol")]
    quotes = {q["symbol"]: q for q in body["quotes"]}
    assert set(quotes) == {"TCS", "AAPL"}
    for quote in quotes.values():
        assert set(quote) == QUOTE_FIELDS
        assert Decimal(quote["change"]) == Decimal(quote["price"]) - Decimal(quote["prev_close"])
        assert quote["source"] == "simulated"
    assert (quotes["TCS"]["currency"], quotes["AAPL"]["currency"]) == ("INR", "USD")


def test_quotes_without_symbols_is_the_board(client: TestClient) -> None:
    board = client.get("/api/quotes").json()
    named = {q["symbol"] for q in board["quotes"]} | set(board["missing"])
    assert {"NIFTY 50", "TCS", "AAPL"} <= named and board["rejected"] == []


@pytest.mark.parametrize(
    ("query", "code", "words"),
    [
        ("symbols=TCS,b@d", "invalid_symbol", "'b@d'"),
        ("symbols=" + ",".join(f"X{i}!" for i in range(5)), "invalid_symbol", "X4!"),
        ("symbols=A,B,C,D,E,F", "too_many_symbols", "6 given"),
        ("symbols=" + "A" * 25, "invalid_symbol", "longer than 24"),
    ],
)
def test_quotes_bad_input_is_a_400_with_the_error_envelope(
    client: TestClient, query: str, code: str, words: str
) -> None:
    response = client.get(f"/api/quotes?{query}")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == code and words in error["message"], error


def test_poll_without_a_cursor_answers_at_once_and_its_cursor_asks_for_newer(
    client: TestClient,
) -> None:
    wait_priced(client, "TCS", "INFY")
    first = client.get("/api/poll?symbols=TCS,INFY").json()
    assert first["type"] == "poll" and first["timeout"] is False and first["rejected"] == []
    versions = {q["symbol"]: (q["epoch"], q["seq"]) for q in first["quotes"]}
    assert set(versions) == {"TCS", "INFY"}
    # The cursor is what the client has: the next answer holds only newer quotes.
    second = client.get("/api/poll", params={"symbols": "TCS,INFY", "cursor": first["cursor"]})
    news = second.json()["quotes"]
    assert news and all((q["epoch"], q["seq"]) > versions[q["symbol"]] for q in news)


def test_poll_of_only_rejected_symbols_reports_once_then_waits_out_the_timeout(
    client: TestClient,
) -> None:
    first = client.get("/api/poll?symbols=NOPE").json()
    assert first["timeout"] is False and [r["symbol"] for r in first["rejected"]] == ["NOPE"]
    started = time.monotonic()
    second = client.get("/api/poll", params={"symbols": "NOPE", "cursor": first["cursor"]}).json()
    waited = time.monotonic() - started
    assert second["timeout"] is True and second["quotes"] == []
    assert [r["symbol"] for r in second["rejected"]] == ["NOPE"]  # still listed, not news
    assert waited >= 0.9  # POLL_TIMEOUT=1: not a tight loop


def test_poll_html_is_the_rows_a_websocket_page_gets(client: TestClient) -> None:
    wait_priced(client, "TCS")
    body = client.get("/api/poll?format=html&symbols=TCS,NOPE").json()
    assert "quotes" not in body
    html = body["html"]
    # The rejected row first, then the quote's, both swapped out of band by id.
    assert html.index('id="q-NOPE"') < html.index('id="q-TCS"')
    assert html.count('hx-swap-oob="true"') == 2 and 'class="quote rejected"' in html


def _cursor(items: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(items)).decode().rstrip("=")


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"symbols": "TCS", "format": "xml"}, "bad_format"),
        ({"symbols": "TCS", "cursor": "!!not base64!!"}, "bad_cursor"),
        ({"symbols": "TCS", "cursor": _cursor({"TCS": 1})}, "bad_cursor"),
        ({"symbols": "TCS", "cursor": _cursor([["TCS", "1", 2]])}, "bad_cursor"),
        ({"symbols": "TCS", "cursor": "A" * 20_000}, "bad_cursor"),
        ({}, "missing_symbols"),
        ({"symbols": " "}, "missing_symbols"),
    ],
)
def test_poll_bad_input_is_a_400(client: TestClient, params: dict[str, str], code: str) -> None:
    response = client.get("/api/poll", params=params)
    assert response.status_code == 400 and response.json()["error"]["code"] == code


def test_unknown_api_path_is_a_plain_404(client: TestClient) -> None:
    response = client.get("/api/nothing")
    assert response.status_code == 404 and response.headers["content-type"].startswith("text/plain")
