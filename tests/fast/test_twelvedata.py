"""Twelve Data adapter on httpx MockTransport, with the bodies of providers.md section 1."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest

from app.feeds.base import FeedRateLimited, FeedRejected, FeedUnavailable, FetchResult
from app.feeds.twelvedata import TwelveDataFeed
from tests.fakes.provider import TD_DAY, TD_KEY, TD_MINUTE, TD_NOT_FOUND
from tests.fast.mock_http import Handler, Provider, always, json_reply

KEY = "td-secret-0123456789"
NOW = 1_800_000_000.0

RELIANCE = {
    "symbol": "RELIANCE", "name": "Reliance Industries Limited", "exchange": "NSE",
    "mic_code": "XNSE", "currency": "INR", "datetime": "2025-01-15", "timestamp": 1736879400,
    "last_quote_at": 1736935140, "open": "1262.00000", "high": "1275.50000", "low": "1258.10000",
    "close": "1270.45000", "volume": "9876543", "previous_close": "1259.80000",
    "change": "10.65000", "percent_change": "0.84537", "average_volume": "11234567",
    "is_market_open": True,
    "fifty_two_week": {"low": "1201.50000", "high": "1608.80000", "range": "1201.5 - 1608.8"},
}  # fmt: skip
AAPL = {
    "symbol": "AAPL", "name": "Apple Inc", "exchange": "NASDAQ", "mic_code": "XNGS",
    "currency": "USD", "datetime": "2025-01-15", "timestamp": 1736917200,
    "last_quote_at": 1736974740, "open": "234.64000", "high": "238.96000", "low": "234.43000",
    "close": "237.87000", "volume": "39832012", "previous_close": "233.28000",
    "change": "4.59000", "percent_change": "1.96759", "average_volume": "47012345",
    "is_market_open": False,
}  # fmt: skip
NOT_FOUND = {"code": 404, "message": TD_NOT_FOUND, "status": "error"}
MINUTE = {"code": 429, "message": TD_MINUTE, "status": "error"}
DAY = {"code": 429, "message": TD_DAY, "status": "error"}
BAD_KEY = {"code": 401, "message": TD_KEY, "status": "error"}
PLAN = {
    "code": 403,
    "message": "/quote is available exclusively with grow or pro or ultra or enterprise plans. "
    "Consider upgrading your API Key now at https://twelvedata.com/pricing",
    "status": "error",
}


async def fetch(answer: Handler, symbols: list[str]) -> tuple[FetchResult, Provider]:
    provider = Provider(answer)
    async with provider.client() as client:
        feed = TwelveDataFeed(client, KEY, "https://td.test/", timeout=1.0, clock=lambda: NOW)
        return await feed.fetch(symbols), provider


async def fails(answer: Handler, symbols: list[str]) -> pytest.ExceptionInfo[Exception]:
    with pytest.raises(Exception) as raised:
        await fetch(answer, symbols)
    assert KEY not in str(raised.value)
    return raised


async def test_a_batch_is_one_request_keyed_by_symbol_with_per_symbol_errors() -> None:
    body = {"AAPL": AAPL, "RELIANCE:NSE": RELIANCE, "NOTATICKER": NOT_FOUND}
    result, provider = await fetch(
        always(body, headers={"api-credits-left": "5"}), ["AAPL", "RELIANCE", "NOTATICKER"]
    )
    [request] = provider.requests
    assert request.url.path == "/quote"
    # Indian symbols of the universe are asked for on their exchange; the client's name is kept.
    assert request.url.params["symbol"] == "AAPL,RELIANCE:NSE,NOTATICKER"
    assert request.headers["authorization"] == f"apikey {KEY}" and KEY not in str(request.url)
    quotes = {q.symbol: q for q in result.quotes}
    assert set(quotes) == {"AAPL", "RELIANCE"}
    reliance = quotes["RELIANCE"]
    assert (reliance.price, reliance.prev_close) == (Decimal("1270.45"), Decimal("1259.8"))
    assert (reliance.change, reliance.change_pct) == (Decimal("10.65"), Decimal("0.84537"))
    assert (reliance.open, reliance.high, reliance.low) == (
        Decimal("1262"), Decimal("1275.5"), Decimal("1258.1"),
    )  # fmt: skip
    assert (reliance.currency, reliance.exchange, reliance.name) == (
        "INR", "NSE", "Reliance Industries Limited",
    )  # fmt: skip
    # Freshness is the last minute candle, not the bar's open.
    assert reliance.source_time == 1736935140 * 1000 and reliance.market_open is True
    assert reliance.volume == 9876543 and reliance.source == "twelvedata"
    assert quotes["AAPL"].market_open is False and quotes["AAPL"].currency == "USD"
    assert result.rejected == {"NOTATICKER": NOT_FOUND["message"]}
    assert result.credits_left == 5


async def test_a_batch_of_one_comes_back_flat() -> None:
    result, _ = await fetch(always(AAPL), ["AAPL"])
    [quote] = result.quotes
    assert quote.symbol == "AAPL" and quote.price == Decimal("237.87")


async def test_a_key_without_the_exchange_suffix_and_an_inner_symbol_match() -> None:
    # Whether the key echoes ":NSE" is unverified: both spellings are accepted.
    result, _ = await fetch(always({"AAPL": AAPL, "RELIANCE": RELIANCE}), ["AAPL", "RELIANCE"])
    assert {q.symbol for q in result.quotes} == {"AAPL", "RELIANCE"}
    renamed = {"first": AAPL, "second": RELIANCE}
    result, _ = await fetch(always(renamed), ["AAPL", "RELIANCE:NSE"])
    assert {q.symbol for q in result.quotes} == {"AAPL", "RELIANCE:NSE"}


@pytest.mark.parametrize("status", [200, 404])
async def test_a_single_unknown_symbol_is_rejected_not_an_error(status: int) -> None:
    result, _ = await fetch(always(NOT_FOUND, status), ["NOPE"])
    assert result.quotes == [] and result.rejected == {"NOPE": NOT_FOUND["message"]}


@pytest.mark.parametrize("status", [200, 429])
async def test_minute_and_day_credit_limits_are_told_apart(status: int) -> None:
    minute = await fails(always(MINUTE, status), ["AAPL", "MSFT"])
    assert isinstance(minute.value, FeedRateLimited) and minute.value.scope == "minute"
    day = await fails(always(DAY, status), ["AAPL", "MSFT"])
    assert isinstance(day.value, FeedRateLimited) and day.value.scope == "day"


async def test_one_symbol_out_of_credits_inside_a_batch_limits_the_whole_batch() -> None:
    raised = await fails(always({"AAPL": AAPL, "MSFT": MINUTE}), ["AAPL", "MSFT"])
    assert isinstance(raised.value, FeedRateLimited) and raised.value.scope == "minute"


@pytest.mark.parametrize(("body", "status"), [(BAD_KEY, 200), (BAD_KEY, 401), (PLAN, 403)])
async def test_a_bad_key_or_plan_for_a_batch_is_refused(body: dict[str, Any], status: int) -> None:
    raised = await fails(always(body, status), ["AAPL", "MSFT"])
    assert isinstance(raised.value, FeedRejected)
    assert f"HTTP {body['code']}" in str(raised.value)


async def test_a_message_quoting_the_key_is_masked() -> None:
    echo = {**BAD_KEY, "message": f"apikey={KEY} is not valid; key {KEY} refused"}
    raised = await fails(always(echo), ["AAPL", "MSFT"])
    assert "***" in str(raised.value)


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (lambda r: httpx.Response(502, content=b"<html>Bad gateway</html>"), "HTML page"),
        (lambda r: httpx.Response(200, content=b'{"AAPL": {"close": "23'), "non-JSON"),
        (lambda r: json_reply({"oops": True}, 503), "server error HTTP 503"),
        (lambda r: json_reply([AAPL]), "not an object"),
        (lambda r: json_reply({"code": 500, "message": "boom", "status": "error"}), "error 500"),
        (lambda r: json_reply({}, 418), "error 418"),
    ],
)
async def test_provider_garbage_is_unavailable(answer: Handler, words: str) -> None:
    raised = await fails(answer, ["AAPL", "MSFT"])
    assert isinstance(raised.value, FeedUnavailable) and words in str(raised.value)


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (httpx.ReadTimeout("slow"), "no answer within 1s"),
        (httpx.ConnectError("refused"), "request failed (ConnectError)"),
    ],
)
async def test_transport_failures_are_unavailable_without_the_url(
    error: Exception, words: str
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        raise error

    raised = await fails(answer, ["AAPL"])
    assert isinstance(raised.value, FeedUnavailable) and str(raised.value).endswith(words)
    assert "td.test" not in str(raised.value)


async def test_entries_without_a_usable_price_are_skipped_not_invented() -> None:
    no_price = {**AAPL, "close": None}
    nonsense = {**RELIANCE, "close": "n/a"}
    result, _ = await fetch(always({"AAPL": no_price, "RELIANCE:NSE": nonsense, "MSFT": "x"}),
                            ["AAPL", "RELIANCE", "MSFT"])  # fmt: skip
    assert result.quotes == [] and result.rejected == {}


async def test_null_fields_are_derived_and_a_missing_time_is_now() -> None:
    sparse = {
        **AAPL, "change": None, "percent_change": None, "open": None, "high": None,
        "low": None, "volume": None, "last_quote_at": None, "timestamp": None,
        "is_market_open": None,
    }  # fmt: skip
    result, _ = await fetch(always(sparse), ["AAPL"])
    [quote] = result.quotes
    assert quote.change == Decimal("237.87") - Decimal("233.28")
    assert quote.change_pct == (quote.change / Decimal("233.28") * 100).quantize(Decimal("0.0001"))
    assert quote.open == quote.high == quote.low == quote.price
    assert quote.volume is None and quote.market_open is None
    assert quote.source_time == int(NOW * 1000)
