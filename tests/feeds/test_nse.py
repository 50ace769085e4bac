"""The opt-in `nse` feed against a local server serving NSE's documented shapes: cookies from a
first visit, the current and legacy quote shapes, indices, block pages and hangs; and the same
breaker, quota guard and failover chain as the other providers."""

from __future__ import annotations

import time
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import httpx
import pytest

from app.feeds import build_feed
from app.feeds.base import FeedUnavailable
from app.feeds.chain import FeedChain
from app.feeds.nse import NseFeed, parse_ist
from app.settings import Settings
from tests.fakes.provider import KEYS, NSE_COOKIES, FakeProviders

UPDATED = int(datetime(2025, 1, 15, 15, 30, tzinfo=ZoneInfo("Asia/Kolkata")).timestamp() * 1000)


def nse(fake: FakeProviders, http: httpx.AsyncClient, timeout: float = 2.0) -> NseFeed:
    return NseFeed(http, fake.url("nse"), timeout)


async def test_a_first_visit_sets_the_cookies_then_quotes_and_indices(
    fake: FakeProviders, http: httpx.AsyncClient
) -> None:
    feed = nse(fake, http)
    result = await feed.fetch(["RELIANCE", "NIFTY 50", "NIFTY BANK", "NOPE", "TCS:NSE"])
    assert fake.state.calls["nse_home"] == 1
    quotes = {q.symbol: q for q in result.quotes}
    assert set(quotes) == {"RELIANCE", "NIFTY 50", "NIFTY BANK", "TCS:NSE"}
    reliance = quotes["RELIANCE"]
    assert reliance.price == Decimal("1264.40") and reliance.prev_close == Decimal("1259.8")
    assert reliance.change == Decimal("4.60") and reliance.change_pct == Decimal("0.85")
    assert reliance.volume == 9_876_543  # "98,76,543": Indian digit grouping
    assert (reliance.exchange, reliance.currency, reliance.source) == ("NSE", "INR", "nse")
    assert reliance.source_time == UPDATED and reliance.market_open is None
    assert reliance.name == "Reliance Industries Ltd"
    nifty, bank = quotes["NIFTY 50"], quotes["NIFTY BANK"]
    assert nifty.price == Decimal("23213.2") and nifty.change == Decimal("36.15")
    assert nifty.volume is None and nifty.high == Decimal("23250.0")
    assert bank.price == Decimal("49278.70") and bank.change_pct == Decimal("-0.24")
    assert "no quote" in result.rejected["NOPE"]  # an empty equityResponse
    # Every API call was browser-like and carried both cookies.
    for headers in fake.state.seen_headers:
        assert "Mozilla" in headers["user-agent"] and headers["x-requested-with"]
        assert all(f"{k}={v}" in headers["cookie"] for k, v in NSE_COOKIES.items())
        assert headers["referer"].startswith(fake.url("nse"))
    # The session is reused: no second visit.
    await feed.fetch(["RELIANCE"])
    assert fake.state.calls["nse_home"] == 1


async def test_the_legacy_quote_shape_is_read_too(
    fake: FakeProviders, http: httpx.AsyncClient
) -> None:
    fake.state.mode["nse"] = "legacy"
    [quote] = (await nse(fake, http).fetch(["RELIANCE"])).quotes
    assert quote.price == Decimal("1264.40") and quote.low == Decimal("1258.8")
    assert quote.volume is None and quote.source_time == UPDATED


@pytest.mark.parametrize(
    ("mode", "says"),
    [
        ("akamai", "HTTP 403 with an HTML page (blocked?"),
        ("unauthorized", "HTTP 401 with an HTML page (the session cookies were refused)"),
        ("homeblock", "blocked (HTTP 403 Access Denied page) on the home page"),
    ],
)
async def test_block_pages_are_failures_and_the_session_starts_again(
    fake: FakeProviders, http: httpx.AsyncClient, mode: str, says: str
) -> None:
    feed = nse(fake, http)
    fake.state.mode["nse"] = mode
    with pytest.raises(FeedUnavailable) as info:
        await feed.fetch(["RELIANCE", "NIFTY 50"])
    assert says in str(info.value)
    visits = fake.state.calls["nse_home"]
    fake.state.mode["nse"] = "ok"
    assert [q.symbol for q in (await feed.fetch(["RELIANCE"])).quotes] == ["RELIANCE"]
    assert fake.state.calls["nse_home"] == visits + 1  # fresh cookies after the refusal


async def test_a_hang_is_cut_off_by_the_timeout(
    fake: FakeProviders, http: httpx.AsyncClient
) -> None:
    fake.state.mode["nse"] = "hang"
    fake.state.delay = 3.0
    started = time.monotonic()
    with pytest.raises(FeedUnavailable) as info:
        await nse(fake, http, timeout=0.3).fetch(["RELIANCE", "INFY", "NIFTY 50"])
    assert time.monotonic() - started < 2.0  # the requests overlap: one timeout, not three
    assert "no answer within 0.3s" in str(info.value)


def test_it_prices_nse_symbols_only() -> None:
    feed = NseFeed(httpx.AsyncClient())
    for symbol in ("RELIANCE", "TCS:NSE", "NIFTY 50", "NIFTY BANK", "ZOMATO"):
        assert feed.check_symbol(symbol) is None, symbol
    for symbol in ("AAPL", "SPX", "SENSEX", "TCS:BSE"):
        assert "NSE symbols only" in (feed.check_symbol(symbol) or ""), symbol


def test_ist_times() -> None:
    assert parse_ist("15-Jan-2025 15:30:00") == UPDATED
    assert parse_ist("As on 15-Jan-2025 15:30 IST") == UPDATED
    assert parse_ist("yesterday") == parse_ist(None) == 0


async def test_behind_the_breaker_and_the_chain(
    fake: FakeProviders, http: httpx.AsyncClient
) -> None:
    # FEEDS=nse,twelvedata: NSE first, keyless; Twelve Data takes over while NSE is blocked.
    settings = Settings.from_env({
        "FEEDS": "nse,twelvedata", "NSE_BASE_URL": fake.url("nse"),
        "TWELVEDATA_API_KEY": KEYS["td"], "TWELVEDATA_BASE_URL": fake.url("td"),
        "TWELVEDATA_CALLS_PER_MINUTE": "1000", "NSE_CALLS_PER_MINUTE": "1000",
        "BREAKER_FAIL_MAX": "2", "FETCH_INTERVAL": "2",
    })  # fmt: skip
    chain = build_feed(settings, http)
    assert isinstance(chain, FeedChain)
    [guarded, _] = chain.providers
    first = await chain.fetch(["RELIANCE"])
    assert [q.source for q in first.quotes] == ["nse"]
    fake.state.mode["nse"] = "akamai"
    for _ in range(2):
        result = await chain.fetch(["RELIANCE"])
        assert [q.source for q in result.quotes] == ["twelvedata"]  # failover in the same poll
        assert chain.status().reason == "failover"
    assert guarded.breaker.current_state == "open"
    calls = fake.state.calls["nse"]
    await chain.fetch(["RELIANCE"])
    assert fake.state.calls["nse"] == calls  # an open breaker calls nobody
