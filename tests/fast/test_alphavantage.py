"""Alpha Vantage adapter on httpx MockTransport, with the bodies of providers.md section 2.

Every answer is HTTP 200; what it means is in its keys and, for notices, its text.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from app.feeds.alphavantage import AlphaVantageFeed
from app.feeds.base import (
    END_OF_DAY_SOURCES,
    FeedRateLimited,
    FeedRejected,
    FeedUnavailable,
    FetchResult,
)
from tests.fakes.provider import AV_BAD_KEY, AV_DAILY, AV_NOTE, AV_PREMIUM, AV_SPARINGLY
from tests.fast.mock_http import Handler, Provider, always, json_reply

KEY = "av-secret-0123456789"
RELIANCE_BSE = {"Global Quote": {
    "01. symbol": "RELIANCE.BSE", "02. open": "1262.0000", "03. high": "1275.5000",
    "04. low": "1258.1000", "05. price": "1270.4500", "06. volume": "412345",
    "07. latest trading day": "2025-01-15", "08. previous close": "1259.8000",
    "09. change": "10.6500", "10. change percent": "0.8454%",
}}  # fmt: skip
IBM = {"Global Quote": {**RELIANCE_BSE["Global Quote"], "01. symbol": "IBM"}}
UNKNOWN: dict[str, dict[str, str]] = {"Global Quote": {}}
BAD_KEY = {"Error Message": AV_BAD_KEY}
BAD_CALL = {"Error Message": "Invalid API call. Please retry or visit the documentation "
            "(https://www.alphavantage.co/documentation/) for GLOBAL_QUOTE."}  # fmt: skip
# The notices as the fake provider serves them (providers.md section 2).
DAILY = {"Information": AV_DAILY}
SPARINGLY = {"Information": AV_SPARINGLY}
LEGACY_MINUTE = {"Note": AV_NOTE}
PREMIUM = {"Information": AV_PREMIUM}
DEMO = {"Information": "The **demo** API key is for demo purposes only."}


async def fetch(answer: Handler, symbols: list[str]) -> tuple[FetchResult, Provider]:
    provider = Provider(answer)
    async with provider.client() as client:
        feed = AlphaVantageFeed(client, KEY, "https://av.test/query", timeout=1.0)
        return await feed.fetch(symbols), provider


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


async def test_a_bse_quote_in_its_strings_and_its_trading_days_close() -> None:
    result, provider = await fetch(always(RELIANCE_BSE), ["RELIANCE:BSE"])
    [request] = provider.requests
    assert dict(request.url.params) == {
        "function": "GLOBAL_QUOTE", "symbol": "RELIANCE.BSE", "apikey": KEY,
    }  # fmt: skip
    [quote] = result.quotes
    assert quote.symbol == "RELIANCE:BSE" and quote.source == "alphavantage"
    assert (quote.price, quote.change, quote.change_pct) == (
        Decimal("1270.45"), Decimal("10.65"), Decimal("0.8454"),
    )  # fmt: skip
    assert (quote.open, quote.high, quote.low, quote.prev_close, quote.volume) == (
        Decimal("1262"), Decimal("1275.5"), Decimal("1258.1"), Decimal("1259.8"), 412345,
    )  # fmt: skip
    assert (quote.currency, quote.exchange, quote.market_open) == ("INR", "BSE", None)
    # Only a date: stamped at that day's close, 15:30 in Mumbai (10:00 UTC).
    assert quote.source_time == ms(datetime(2025, 1, 15, 10, 0, tzinfo=UTC))


async def test_a_us_quote_closes_at_four_in_new_york() -> None:
    result, _ = await fetch(always(IBM), ["IBM", "AAPL"])
    quotes = {q.symbol: q for q in result.quotes}
    assert quotes["IBM"].currency == "USD" and quotes["IBM"].exchange == "US"
    assert quotes["AAPL"].exchange == "NASDAQ"  # the universe knows better than "US"
    assert quotes["IBM"].source_time == ms(datetime(2025, 1, 15, 21, 0, tzinfo=UTC))


async def test_an_empty_global_quote_and_a_bad_call_reject_only_that_symbol() -> None:
    answers = {"IBM": json_reply(IBM), "ZZZZ": json_reply(UNKNOWN), "BAD": json_reply(BAD_CALL)}
    result, _ = await fetch(
        lambda request: answers[request.url.params["symbol"]], ["IBM", "ZZZZ", "BAD"]
    )
    assert [q.symbol for q in result.quotes] == ["IBM"]
    assert "no quote for this symbol" in result.rejected["ZZZZ"]
    assert result.rejected["BAD"].startswith("Invalid API call")


@pytest.mark.parametrize(
    ("body", "kind", "scope", "retry_after"),
    [
        (DAILY, FeedRateLimited, "day", 0.0),
        (SPARINGLY, FeedRateLimited, "minute", 60.0),
        (LEGACY_MINUTE, FeedRateLimited, "minute", 60.0),
        (PREMIUM, FeedRejected, None, None),
        (DEMO, FeedRejected, None, None),
        (BAD_KEY, FeedRejected, None, None),
        ({"Information": BAD_KEY["Error Message"]}, FeedRejected, None, None),
        ({"Information": "Something new happened."}, FeedUnavailable, None, None),
    ],
)
async def test_notices_and_hard_errors_by_their_text(
    body: dict[str, str], kind: type[Exception], scope: str | None, retry_after: float | None
) -> None:
    with pytest.raises(kind) as raised:
        await fetch(always(body), ["IBM"])
    if scope is not None:
        assert isinstance(raised.value, FeedRateLimited)
        assert (raised.value.scope, raised.value.retry_after) == (scope, retry_after)


async def test_calls_are_sequential_and_stop_at_a_provider_wide_refusal() -> None:
    answers = [json_reply(IBM), json_reply(DAILY), json_reply(IBM)]
    provider = Provider(lambda request: answers.pop(0))
    async with provider.client() as client:
        with pytest.raises(FeedRateLimited):
            await AlphaVantageFeed(client, KEY, "https://av.test/query").fetch(["A", "B", "C"])
    # In order, and C never asked for: the daily limit would refuse it too.
    assert [r.url.params["symbol"] for r in provider.requests] == ["A", "B"]


async def test_a_notice_quoting_the_key_is_masked() -> None:
    echo = {"Information": f"We have detected your API key as {KEY} and our standard API rate "
            "limit is 25 requests per day."}  # fmt: skip
    with pytest.raises(FeedRateLimited) as raised:
        await fetch(always(echo), ["IBM"])
    assert KEY not in str(raised.value) and "***" in str(raised.value)


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (lambda r: httpx.Response(200, content=b"<html><body>Access Denied</body></html>"),
         "HTML page"),
        (always({"Global Quote": "not an object"}), "without a quote"),
        (always({"something": "else"}), "without a quote"),
        (always([RELIANCE_BSE]), "unexpected answer"),
        (always(IBM, 404), "HTTP 404"),
    ],
)  # fmt: skip
async def test_garbage_is_unavailable(answer: Handler, words: str) -> None:
    with pytest.raises(FeedUnavailable, match=words):
        await fetch(answer, ["IBM"])


async def test_a_quote_without_a_price_or_a_date_is_not_invented() -> None:
    no_price = {"Global Quote": {**IBM["Global Quote"], "05. price": ""}}
    result, _ = await fetch(always(no_price), ["IBM"])
    assert result.quotes == [] and "no price" in result.rejected["IBM"]
    no_date = {"Global Quote": {**IBM["Global Quote"], "07. latest trading day": "yesterday"}}
    [quote] = (await fetch(always(no_date), ["IBM"]))[0].quotes
    assert quote.source_time == 0  # unknown age, never "now"


def test_check_symbol_refuses_explicit_nse_and_indices() -> None:
    feed = AlphaVantageFeed(httpx.AsyncClient(), KEY)
    assert feed.check_symbol("IBM") is None and feed.check_symbol("RELIANCE:BSE") is None
    # The universe's NSE equities are priced from their BSE listing.
    assert feed.check_symbol("RELIANCE") is None and feed.check_symbol("M&M") is None
    for symbol in ("TCS:NSE", "INFY.NSE"):
        assert "no NSE data" in (feed.check_symbol(symbol) or ""), symbol
    for symbol in ("SPX", "NIFTY 50", "SENSEX"):
        assert "indices" in (feed.check_symbol(symbol) or ""), symbol


async def test_the_universes_nse_equities_are_asked_for_as_their_bse_listing() -> None:
    result, provider = await fetch(always(RELIANCE_BSE), ["RELIANCE"])
    assert provider.requests[0].url.params["symbol"] == "RELIANCE.BSE"
    [quote] = result.quotes
    # The trader's symbol, the price's true exchange, and its end-of-day nature.
    assert (quote.symbol, quote.exchange, quote.currency) == ("RELIANCE", "BSE", "INR")
    assert quote.name == "Reliance Industries Ltd"
    assert quote.source in END_OF_DAY_SOURCES
