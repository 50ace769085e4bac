"""Twelve Data adapter against the fake server: every documented shape and error."""

from __future__ import annotations

import time
from decimal import Decimal

import httpx
import pytest

from app.feeds.base import FeedRateLimited, FeedRejected, FeedUnavailable
from app.feeds.twelvedata import TwelveDataFeed
from tests.fakes.provider import KEYS, LAST_QUOTE_AT, TD_NOT_FOUND, FakeProviders


def feed(fake: FakeProviders, http: httpx.AsyncClient, timeout: float = 2.0) -> TwelveDataFeed:
    return TwelveDataFeed(http, KEYS["td"], fake.url("td"), timeout)


async def test_one_batch_call_prices_us_and_indian_symbols(
    fake: FakeProviders, http: httpx.AsyncClient
) -> None:
    result = await feed(fake, http).fetch(["AAPL", "RELIANCE", "NOTATICKER"])
    assert fake.state.calls["td"] == 1
    assert "symbol=AAPL%2CRELIANCE%3ANSE%2CNOTATICKER" in fake.state.seen_urls[0]
    quotes = {q.symbol: q for q in result.quotes}
    assert set(quotes) == {"AAPL", "RELIANCE"}
    aapl = quotes["AAPL"]
    assert aapl.price == Decimal("237.88") and aapl.prev_close == Decimal("233.28")
    assert aapl.change == Decimal("4.60") and aapl.currency == "USD"
    assert (aapl.exchange, aapl.name, aapl.source) == ("NASDAQ", "Apple Inc", "twelvedata")
    assert aapl.source_time == LAST_QUOTE_AT * 1000 and aapl.market_open is True
    assert aapl.volume == 39832012
    reliance = quotes["RELIANCE"]
    assert (reliance.currency, reliance.exchange, reliance.market_open) == ("INR", "NSE", False)
    assert result.rejected == {"NOTATICKER": TD_NOT_FOUND}


async def test_a_batch_of_one_comes_back_flat(fake: FakeProviders, http: httpx.AsyncClient) -> None:
    result = await feed(fake, http).fetch(["RELIANCE:NSE"])
    [quote] = result.quotes
    assert quote.symbol == "RELIANCE:NSE" and quote.currency == "INR"


async def test_a_single_unknown_symbol_is_rejected_not_an_error(
    fake: FakeProviders, http: httpx.AsyncClient
) -> None:
    fake.state.error_status = 404
    result = await feed(fake, http).fetch(["NOPE"])
    assert result.quotes == [] and "invalid" in result.rejected["NOPE"]


async def test_null_change_fields_are_derived(fake: FakeProviders, http: httpx.AsyncClient) -> None:
    fake.state.null_fields = True
    [quote] = (await feed(fake, http).fetch(["MSFT"])).quotes
    assert quote.change == quote.price - Decimal("423.10")
    assert quote.change_pct == (quote.change / Decimal("423.10") * 100).quantize(Decimal("0.0001"))
    assert quote.volume is None


@pytest.mark.parametrize("status", [200, 429])
async def test_minute_and_day_limits_are_told_apart(
    fake: FakeProviders, http: httpx.AsyncClient, status: int
) -> None:
    fake.state.error_status = status
    fake.state.mode["td"] = "minute"
    with pytest.raises(FeedRateLimited) as minute:
        await feed(fake, http).fetch(["AAPL", "MSFT"])
    assert minute.value.scope == "minute"
    fake.state.mode["td"] = "day"
    with pytest.raises(FeedRateLimited) as day:
        await feed(fake, http).fetch(["AAPL", "MSFT"])
    assert day.value.scope == "day"


@pytest.mark.parametrize("status", [200, 401])
async def test_a_bad_key_is_rejected_under_200_or_401(
    fake: FakeProviders, http: httpx.AsyncClient, status: int
) -> None:
    fake.state.error_status = status
    fake.state.mode["td"] = "key"
    with pytest.raises(FeedRejected, match="apikey"):
        await feed(fake, http).fetch(["AAPL", "MSFT"])


@pytest.mark.parametrize(
    ("mode", "text"),
    [("html", "HTML page"), ("garbage", "non-JSON"), ("down", "HTTP 502")],
)
async def test_broken_answers_mean_unavailable(
    fake: FakeProviders, http: httpx.AsyncClient, mode: str, text: str
) -> None:
    fake.state.mode["td"] = mode
    with pytest.raises(FeedUnavailable, match=text):
        await feed(fake, http).fetch(["AAPL", "MSFT"])


async def test_a_slow_answer_times_out(fake: FakeProviders, http: httpx.AsyncClient) -> None:
    fake.state.mode["td"] = "slow"
    started = time.monotonic()
    with pytest.raises(FeedUnavailable, match="no answer within 0.2s"):
        await feed(fake, http, timeout=0.2).fetch(["AAPL"])
    assert time.monotonic() - started < fake.state.delay


async def test_the_key_travels_in_a_header_not_the_url(
    fake: FakeProviders, http: httpx.AsyncClient
) -> None:
    await feed(fake, http).fetch(["AAPL"])
    assert KEYS["td"] not in fake.state.seen_urls[0]
    assert fake.state.seen_headers[0]["authorization"] == f"apikey {KEYS['td']}"


async def test_two_spellings_of_one_instrument_are_asked_once_and_both_answered(
    fake: FakeProviders, http: httpx.AsyncClient
) -> None:
    result = await feed(fake, http).fetch(["RELIANCE", "RELIANCE:NSE", "AAPL"])
    assert fake.state.calls["td"] == 1
    assert {q.symbol for q in result.quotes} == {"RELIANCE", "RELIANCE:NSE", "AAPL"}
    alone = await feed(fake, http).fetch(["RELIANCE", "RELIANCE:NSE"])  # flat: a batch of one
    assert {q.symbol for q in alone.quotes} == {"RELIANCE", "RELIANCE:NSE"}
