"""Circuit breaker per provider (real pybreaker, awaited in `breaker.calling()`) and failover."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from app.feeds.base import FeedRateLimited, FeedRejected, FeedUnavailable, FetchResult
from app.feeds.chain import FeedChain
from app.feeds.guard import CircuitOpen, GuardedProvider, make_breaker
from app.feeds.quota import Quota
from tests.feeds.scripted import Clock, Scripted


def guarded(adapter: Scripted, fail_max: int = 3, reset: float = 60.0) -> GuardedProvider:
    return GuardedProvider(
        adapter, Quota(1_000_000, 0), make_breaker(adapter.name, fail_max, reset)
    )


async def test_breaker_opens_short_circuits_half_opens_and_closes() -> None:
    adapter = Scripted("td")
    provider = guarded(adapter, fail_max=3, reset=0.2)
    adapter.fail = FeedUnavailable("td: down")
    for _ in range(3):
        with pytest.raises(FeedUnavailable):
            await provider.fetch(["A"])
    assert provider.breaker.current_state == "open"
    calls = len(adapter.calls)
    with pytest.raises(CircuitOpen):  # short-circuited: the adapter is not called
        await provider.fetch(["A"])
    assert len(adapter.calls) == calls

    adapter.fail = None
    seen: list[str] = []
    adapter.on_call = lambda: seen.append(provider.breaker.current_state)
    deadline = time.monotonic() + 10
    while True:  # wait out reset_timeout against a deadline, no fixed sleep
        try:
            result = await provider.fetch(["A"])
            break
        except CircuitOpen:
            assert time.monotonic() < deadline, "breaker never half-opened"
            await asyncio.sleep(0.01)
    assert seen == ["half-open"] and result.quotes
    assert provider.breaker.current_state == "closed"
    calls = provider.describe()["calls"]  # exported by /metrics as provider_calls_total
    assert calls["error"] == 3 and calls["ok"] == 1 and calls["circuit_open"] >= 1


async def test_a_failed_trial_call_opens_it_again() -> None:
    adapter = Scripted("td")
    provider = guarded(adapter, fail_max=1, reset=0.05)
    adapter.fail = FeedUnavailable("down")
    with pytest.raises(FeedUnavailable):
        await provider.fetch(["A"])
    deadline = time.monotonic() + 10
    while True:
        try:
            await provider.fetch(["A"])
        except CircuitOpen:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        except FeedUnavailable:
            break  # the trial call reached the adapter and failed
    assert provider.breaker.current_state == "open"


async def test_business_errors_never_open_the_breaker() -> None:
    adapter = Scripted("td")
    adapter.reject = {"NOPE"}
    provider = guarded(adapter, fail_max=1)
    for _ in range(5):
        result = await provider.fetch(["NOPE", "A"])
        assert "NOPE" in result.rejected and result.quotes
    assert provider.breaker.current_state == "closed" and provider.breaker.fail_counter == 0


async def test_a_rate_limit_does_not_count_as_a_failure() -> None:
    clock = Clock()
    adapter = Scripted("td")
    provider = GuardedProvider(adapter, Quota(100, 0, clock), make_breaker("td", 1, 60), clock)
    adapter.fail = FeedRateLimited("minute", 0, "minute")
    with pytest.raises(FeedRateLimited):
        await provider.fetch(["A"])
    assert provider.breaker.current_state == "closed"


async def test_chain_fails_over_in_order_and_reports_why() -> None:
    first, second = Scripted("twelvedata"), Scripted("finnhub", lambda s: ":" not in s)
    chain = FeedChain([guarded(first, fail_max=2), guarded(second)])
    result = await chain.fetch(["AAPL", "TCS:NSE"])
    assert {q.source for q in result.quotes} == {"twelvedata"} and chain.status().state == "live"
    assert second.calls == []

    first.fail = FeedUnavailable("twelvedata: server error HTTP 502")
    result = await chain.fetch(["AAPL", "TCS:NSE"])
    assert [(q.symbol, q.source) for q in result.quotes] == [("AAPL", "finnhub")]
    status = chain.status()  # TCS:NSE has no working provider: stale, and why
    assert (status.state, status.reason, status.source) == ("stale", "provider_down", "twelvedata")

    await chain.fetch(["AAPL"])
    assert chain.providers[0].breaker.current_state == "open"
    await chain.fetch(["AAPL"])
    status = chain.status()
    assert (status.state, status.reason, status.source) == ("live", "failover", "finnhub")
    assert "circuit_open" in (status.detail or "")

    second.fail = FeedRejected("finnhub: key refused")
    result = await chain.fetch(["AAPL"])
    assert result.quotes == []  # nothing invented
    status = chain.status()
    assert (status.state, status.reason) == ("stale", "circuit_open")
    assert status.since is not None


def test_chain_accepts_a_symbol_any_provider_can_price() -> None:
    chain = FeedChain([guarded(Scripted("a", lambda s: s == "X")), guarded(Scripted("b"))])
    assert chain.check_symbol("Y") is None
    only = FeedChain([guarded(Scripted("a", lambda s: s == "X"))])
    assert only.check_symbol("Y") == "a does not list Y"
    assert set(chain.describe()) == {"a", "b"}


class Hanging(Scripted):
    """Answers, but never completely (a trickling or stalled provider)."""

    async def fetch(self, symbols: Sequence[str]) -> FetchResult:
        self.calls.append(list(symbols))
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_a_call_that_outlives_its_deadline_counts_as_a_failure() -> None:
    adapter = Hanging("td")
    provider = GuardedProvider(
        adapter, Quota(1_000_000, 0), make_breaker("td", 2, 60.0), call_timeout=0.05
    )
    for _ in range(2):
        with pytest.raises(FeedUnavailable, match="no complete answer"):
            await provider.fetch(["A"])
    assert provider.breaker.current_state == "open"


async def test_a_hanging_provider_fails_over_within_the_poll() -> None:
    slow = GuardedProvider(
        Hanging("td"), Quota(1_000_000, 0), make_breaker("td", 3, 60.0), call_timeout=0.05
    )
    backup = guarded(Scripted("fh"))
    chain = FeedChain([slow, backup])
    async with asyncio.timeout(5):
        result = await chain.fetch(["A"])
    assert [q.source for q in result.quotes] == ["fh"]


async def test_an_unknown_market_flag_is_filled_from_the_exchange_calendar() -> None:
    # Finnhub and Alpha Vantage say nothing about the market: the calendar does.
    clock = Clock(datetime(2026, 12, 1, 22, 53, tzinfo=UTC).timestamp())  # 17:53 EST, Tuesday
    adapter = Scripted("fh")
    chain = FeedChain([guarded(adapter)], clock=clock)
    after_hours = (await chain.fetch(["AAPL"])).quotes[0]
    assert after_hours.market_open is False
    clock.now = datetime(2026, 12, 1, 15, 0, tzinfo=UTC).timestamp()  # 10:00 EST
    assert (await chain.fetch(["AAPL"])).quotes[0].market_open is True
    clock.now = datetime(2026, 11, 26, 15, 0, tzinfo=UTC).timestamp()  # Thanksgiving
    assert (await chain.fetch(["AAPL"])).quotes[0].market_open is False
    # A provider's own flag stands; an exchange without a calendar stays unknown.
    adapter.market_open = True
    assert (await chain.fetch(["AAPL"])).quotes[0].market_open is True
    adapter.market_open = None
    adapter.exchange = "SIM"
    assert (await chain.fetch(["AAPL"])).quotes[0].market_open is None


async def test_a_poll_that_prices_nothing_keeps_a_stale_status_until_a_real_quote() -> None:
    # 6 calls a minute for one symbol: under pacing most polls have nothing due and call nobody.
    # Such a poll is no news: the status stays stale (it used to flip to live every ~12 s).
    clock = Clock()
    adapter = Scripted("td")
    provider = GuardedProvider(
        adapter, Quota(6, 0, clock), make_breaker("td", 100, 60.0), clock, poll_interval=2.0
    )
    chain = FeedChain([provider], clock)
    adapter.fail = FeedUnavailable("td: connection refused")
    await chain.fetch(["A"])
    assert chain.status().state == "stale"
    idle, states = 0, set()
    for _ in range(15):  # 30 s of polls, most of them calling nobody
        calls = len(adapter.calls)
        clock.advance(2.0)
        await chain.fetch(["A"])
        idle += len(adapter.calls) == calls
        states.add(chain.status().state)
    assert idle >= 10 and states == {"stale"}
    adapter.fail = None
    calls = len(adapter.calls)
    while len(adapter.calls) == calls:  # the next due poll reaches the provider, which answers
        clock.advance(2.0)
        result = await chain.fetch(["A"])
    assert result.quotes and chain.status().state == "live"


async def test_a_call_the_polls_timeout_cuts_short_is_counted_as_a_call_made() -> None:
    provider = guarded(Hanging("td"))
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await provider.fetch(["A"])
    # It may have cost a credit at the provider: /metrics counts it, and the quota keeps it.
    assert provider.describe()["calls"] == {"cancelled": 1}
    assert provider.quota.remaining() == 1_000_000 - 1
