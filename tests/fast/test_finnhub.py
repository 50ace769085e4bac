"""Finnhub adapter on httpx MockTransport, with the bodies of providers.md section 3."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from app.feeds.base import FeedRateLimited, FeedRejected, FeedUnavailable, FetchResult
from app.feeds.finnhub import FinnhubFeed
from tests.fast.mock_http import Handler, Provider, always, json_reply

KEY = "fh-secret-0123456789"
NOW = 1_736_974_800.0
AAPL = {"c": 237.87, "d": 4.59, "dp": 1.9676, "h": 238.96, "l": 234.43, "o": 234.64,
        "pc": 233.28, "t": 1736974799}  # fmt: skip
UNKNOWN = {"c": 0, "d": None, "dp": None, "h": 0, "l": 0, "o": 0, "pc": 0, "t": 0}
NO_ACCESS = {"error": "You don't have access to this resource."}
LIMIT = {"error": "API limit reached. Please try again later. Remaining Limit: 0"}


async def fetch(answer: Handler, symbols: list[str]) -> tuple[FetchResult, Provider]:
    provider = Provider(answer)
    async with provider.client() as client:
        feed = FinnhubFeed(client, KEY, "https://fh.test/api/v1", timeout=1.0, clock=lambda: NOW)
        return await feed.fetch(symbols), provider


def by_symbol(answers: dict[str, httpx.Response]) -> Handler:
    return lambda request: answers[request.url.params["symbol"]]


async def test_one_call_per_symbol_with_the_key_in_a_header() -> None:
    result, provider = await fetch(always(AAPL), ["AAPL", "ZZZZ"])
    assert sorted(r.url.params["symbol"] for r in provider.requests) == ["AAPL", "ZZZZ"]
    for request in provider.requests:
        assert request.url.path == "/api/v1/quote"
        assert request.headers["x-finnhub-token"] == KEY and KEY not in str(request.url)
    quote = next(q for q in result.quotes if q.symbol == "AAPL")
    assert (quote.price, quote.change, quote.change_pct) == (
        Decimal("237.87"), Decimal("4.59"), Decimal("1.9676"),
    )  # fmt: skip
    assert (quote.open, quote.high, quote.low, quote.prev_close) == (
        Decimal("234.64"), Decimal("238.96"), Decimal("234.43"), Decimal("233.28"),
    )  # fmt: skip
    # /quote has no volume or currency: USD is implied; exchange and name from the universe.
    assert (quote.volume, quote.currency, quote.exchange, quote.name) == (
        None, "USD", "NASDAQ", "Apple Inc",
    )  # fmt: skip
    unlisted = next(q for q in result.quotes if q.symbol == "ZZZZ")  # not in our universe
    assert (unlisted.currency, unlisted.exchange, unlisted.name) == ("USD", "US", "ZZZZ")
    assert quote.source_time == 1736974799 * 1000 and quote.source == "finnhub"


async def test_an_all_zero_answer_and_a_403_reject_the_symbol_only() -> None:
    answers = {
        "AAPL": json_reply(AAPL),
        "ZZZZ": json_reply(UNKNOWN),
        "SAP": json_reply(NO_ACCESS, 403),
    }
    result, _ = await fetch(by_symbol(answers), ["AAPL", "ZZZZ", "SAP"])
    assert [q.symbol for q in result.quotes] == ["AAPL"]
    assert "no data for this symbol" in result.rejected["ZZZZ"]
    assert result.rejected["SAP"] == NO_ACCESS["error"]


async def test_null_change_fields_are_derived_from_the_previous_close() -> None:
    result, _ = await fetch(always({**AAPL, "d": None, "dp": None}), ["AAPL"])
    [quote] = result.quotes
    assert quote.change == Decimal("237.87") - Decimal("233.28")
    assert quote.change_pct == (quote.change / Decimal("233.28") * 100).quantize(Decimal("0.0001"))


async def test_a_429_is_a_minute_limit_until_the_reset_header() -> None:
    reset = {"X-Ratelimit-Limit": "60", "X-Ratelimit-Remaining": "0",
             "X-Ratelimit-Reset": str(int(NOW) + 42)}  # fmt: skip
    with pytest.raises(FeedRateLimited) as limited:
        await fetch(always(LIMIT, 429, reset), ["AAPL", "MSFT"])
    assert (limited.value.scope, limited.value.retry_after) == ("minute", 42.0)
    assert "API limit reached" in str(limited.value)
    with pytest.raises(FeedRateLimited) as without_reset:
        await fetch(always(LIMIT, 429), ["AAPL"])
    assert without_reset.value.retry_after == 0.0


async def test_a_bad_key_is_refused_and_the_key_never_shown() -> None:
    echo = {"error": f"Invalid API key {KEY}"}
    with pytest.raises(FeedRejected) as refused:
        await fetch(always(echo, 401), ["AAPL", "MSFT"])
    assert KEY not in str(refused.value) and "***" in str(refused.value)


async def test_one_symbol_failing_does_not_fail_the_others() -> None:
    answers = {
        "AAPL": json_reply(AAPL),
        "MSFT": httpx.Response(500, content=b"oops"),
        "NVDA": json_reply({"unexpected": "shape"}),
    }
    result, _ = await fetch(by_symbol(answers), ["AAPL", "MSFT", "NVDA"])
    assert [q.symbol for q in result.quotes] == ["AAPL"] and result.rejected == {}


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (always({"unexpected": "shape"}), "unexpected quote body"),
        (always([1, 2, 3]), "unexpected quote body"),
        (always({"error": "teapot"}, 418), "HTTP 418: teapot"),
        (lambda r: httpx.Response(200, content=b"<!DOCTYPE html><p>blocked"), "HTML page"),
    ],
)
async def test_when_every_symbol_fails_the_first_failure_is_raised(
    answer: Handler, words: str
) -> None:
    with pytest.raises(FeedUnavailable, match=words):
        await fetch(answer, ["AAPL", "MSFT"])


def test_check_symbol_refuses_indian_symbols_and_indices() -> None:
    feed = FinnhubFeed(httpx.AsyncClient(), KEY)
    assert feed.check_symbol("AAPL") is None and feed.check_symbol("ZZZZ") is None
    for symbol in ("RELIANCE", "SBIN:NSE", "RELIANCE:BSE"):
        assert "US symbols only" in (feed.check_symbol(symbol) or ""), symbol
    assert "indices" in (feed.check_symbol("SPX") or "")
