"""Finnhub and Alpha Vantage adapters against the fake server."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from app.feeds.alphavantage import AlphaVantageFeed
from app.feeds.base import FeedRateLimited, FeedRejected, FeedUnavailable
from app.feeds.finnhub import FinnhubFeed
from tests.fakes.provider import KEYS, LAST_QUOTE_AT, FakeProviders


def finnhub(fake: FakeProviders, http: httpx.AsyncClient) -> FinnhubFeed:
    return FinnhubFeed(http, KEYS["fh"], fake.url("fh"), 2.0)


def alphavantage(fake: FakeProviders, http: httpx.AsyncClient) -> AlphaVantageFeed:
    return AlphaVantageFeed(http, KEYS["av"], fake.url("av"), 2.0)


async def test_finnhub_quotes_one_call_per_symbol(
    fake: FakeProviders, http: httpx.AsyncClient
) -> None:
    result = await finnhub(fake, http).fetch(["AAPL", "NOPE", "SBIN.NS", "MSFT"])
    assert fake.state.calls["fh"] == 4
    quotes = {q.symbol: q for q in result.quotes}
    assert set(quotes) == {"AAPL", "MSFT"}
    aapl = quotes["AAPL"]
    assert aapl.price == Decimal("237.88") and aapl.prev_close == Decimal("233.28")
    assert (aapl.currency, aapl.exchange, aapl.source) == ("USD", "NASDAQ", "finnhub")
    assert aapl.source_time == LAST_QUOTE_AT * 1000 and aapl.volume is None
    assert "no data" in result.rejected["NOPE"]  # the all-zero answer
    assert result.rejected["SBIN.NS"] == "You don't have access to this resource."
    assert all(KEYS["fh"] not in url for url in fake.state.seen_urls)


async def test_finnhub_derives_change_when_null(
    fake: FakeProviders, http: httpx.AsyncClient
) -> None:
    fake.state.null_fields = True
    [quote] = (await finnhub(fake, http).fetch(["MSFT"])).quotes
    assert quote.change == quote.price - Decimal("423.10")


def test_finnhub_refuses_indian_symbols_and_indices_up_front() -> None:
    feed = FinnhubFeed(httpx.AsyncClient(), "k")
    assert feed.check_symbol("AAPL") is None
    for symbol in ("RELIANCE", "TCS:NSE", "NIFTY 50", "SPX"):
        assert feed.check_symbol(symbol) is not None


@pytest.mark.parametrize(
    ("mode", "error"),
    [("limit", FeedRateLimited), ("key", FeedRejected), ("down", FeedUnavailable)],
)
async def test_finnhub_errors(
    fake: FakeProviders, http: httpx.AsyncClient, mode: str, error: type[Exception]
) -> None:
    fake.state.mode["fh"] = mode
    with pytest.raises(error):
        await finnhub(fake, http).fetch(["AAPL", "MSFT"])


async def test_alphavantage_global_quote(fake: FakeProviders, http: httpx.AsyncClient) -> None:
    result = await alphavantage(fake, http).fetch(["IBM", "RELIANCE:BSE", "NOTATICKER"])
    quotes = {q.symbol: q for q in result.quotes}
    ibm = quotes["IBM"]
    assert ibm.price == Decimal("226.1000") and ibm.change_pct == Decimal("2.0767")
    assert (ibm.currency, ibm.exchange, ibm.volume) == ("USD", "US", 412345)
    closed = datetime.fromtimestamp(ibm.source_time / 1000, UTC)
    assert closed == datetime(2025, 1, 15, 21, 0, tzinfo=UTC)  # 16:00 in New York
    reliance = quotes["RELIANCE:BSE"]
    assert (reliance.currency, reliance.exchange) == ("INR", "BSE")
    assert "symbol=RELIANCE.BSE" in fake.state.seen_urls[1]
    assert "no quote" in result.rejected["NOTATICKER"]  # {"Global Quote": {}}


@pytest.mark.parametrize(
    ("mode", "error", "scope"),
    [
        ("note", FeedRateLimited, "minute"),
        ("sparingly", FeedRateLimited, "minute"),
        ("daily", FeedRateLimited, "day"),
        ("premium", FeedRejected, None),
        ("badkey", FeedRejected, None),
        ("html", FeedUnavailable, None),
    ],
)
async def test_alphavantage_notices_under_http_200(
    fake: FakeProviders,
    http: httpx.AsyncClient,
    mode: str,
    error: type[Exception],
    scope: str | None,
) -> None:
    fake.state.mode["av"] = mode
    with pytest.raises(error) as info:
        await alphavantage(fake, http).fetch(["IBM"])
    if scope is not None:
        assert isinstance(info.value, FeedRateLimited) and info.value.scope == scope


def test_alphavantage_refuses_explicit_nse_and_indices() -> None:
    feed = AlphaVantageFeed(httpx.AsyncClient(), "k")
    assert feed.check_symbol("IBM") is None and feed.check_symbol("RELIANCE:BSE") is None
    assert feed.check_symbol("TCS:NSE") is not None and feed.check_symbol("SPX") is not None
