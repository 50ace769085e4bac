"""Quota windows and pacing, on a hand-driven clock: the budget is never exceeded."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest

from app.feeds.base import FeedRateLimited, FetchResult
from app.feeds.guard import GuardedProvider, make_breaker
from app.feeds.quota import Pacer, Quota
from app.feeds.twelvedata import TwelveDataFeed
from tests.fakes.provider import KEYS, FakeProviders
from tests.feeds.scripted import Clock, Scripted


def test_minute_and_day_windows() -> None:
    clock = Clock()
    quota = Quota(8, 20, clock)
    quota.spend(8)
    assert quota.remaining() == 0 and quota.blocked() is None  # full, not refused: just wait
    clock.advance(60)
    assert quota.remaining() == 8 and quota.blocked() is None
    quota.spend(8)
    clock.advance(60)
    assert quota.remaining() == 4  # the day's 20 bind before the minute's 8
    quota.spend(4)
    kind, wait = quota.blocked() or ("", 0.0)
    assert kind == "day" and wait == pytest.approx(86_400 - 120)
    clock.advance(wait)
    assert quota.remaining() == 8


def test_a_refusal_pauses_until_the_next_window() -> None:
    clock = Clock()
    quota = Quota(8, 800, clock)
    clock.advance(30)
    quota.pause(0)
    assert quota.remaining() == 0 and quota.blocked() == ("minute", 30.0)
    clock.advance(30)
    assert quota.remaining() == 8
    quota.disable_for_day()
    assert quota.blocked() == ("day", 86_400 - 60)


def test_refresh_interval_spreads_symbols_over_the_budget() -> None:
    pacer = Pacer(8)
    assert pacer.refresh_interval(1, 2.0) == 7.5
    assert pacer.refresh_interval(19, 2.0) == pytest.approx(142.5)
    assert Pacer(60).refresh_interval(2, 2.0) == 2.0


async def test_polling_never_exceeds_the_budget_and_reaches_every_symbol() -> None:
    clock = Clock()
    adapter = Scripted()
    guarded = GuardedProvider(adapter, Quota(8, 800, clock), make_breaker("t", 3, 60), clock)
    symbols = [f"S{i}" for i in range(19)]
    per_minute: Counter[int] = Counter()
    fetched_at: dict[str, list[float]] = {s: [] for s in symbols}
    for _ in range(900):  # 30 minutes of 2 s polls
        result = await guarded.fetch(symbols)
        per_minute[int(clock.now // 60)] += len(result.quotes)
        for q in result.quotes:
            fetched_at[q.symbol].append(clock.now)
        clock.advance(2)
    assert max(per_minute.values()) <= 8
    assert sum(per_minute.values()) <= 8 * 30
    gaps = [b - a for times in fetched_at.values() for a, b in zip(times, times[1:], strict=False)]
    assert all(times for times in fetched_at.values())
    # Round-robin: once settled, each symbol comes round about every 19 * 60 / 8 = 142.5 s.
    mean = sum(gaps) / len(gaps)
    assert 140 <= mean <= 150, sorted(gaps)


async def test_a_minute_refusal_waits_and_a_day_refusal_disables() -> None:
    clock = Clock()
    adapter = Scripted()
    guarded = GuardedProvider(adapter, Quota(100, 1000, clock), make_breaker("t", 3, 60), clock)
    clock.advance(10)
    adapter.fail = FeedRateLimited("minute", 0, "minute")
    with pytest.raises(FeedRateLimited):
        await guarded.fetch(["A"])
    adapter.fail = None
    calls = len(adapter.calls)
    with pytest.raises(FeedRateLimited):  # no call sure to be refused is made
        await guarded.fetch(["A"])
    assert len(adapter.calls) == calls
    clock.advance(50)
    assert (await guarded.fetch(["A"])).quotes
    clock.advance(1)
    adapter.fail = FeedRateLimited("day", 0, "day")
    with pytest.raises(FeedRateLimited):
        await guarded.fetch(["A"])
    adapter.fail = None
    clock.advance(3600)
    with pytest.raises(FeedRateLimited, match="day quota"):
        await guarded.fetch(["A"])
    assert guarded.breaker.current_state == "closed"  # quota errors are not failures
    clock.advance(86_400)
    assert (await guarded.fetch(["A"])).quotes


async def test_a_spent_daily_budget_disables_without_asking() -> None:
    clock = Clock()
    adapter = Scripted()
    guarded = GuardedProvider(adapter, Quota(100, 3, clock), make_breaker("t", 3, 60), clock)
    assert len((await guarded.fetch(["A", "B", "C"])).quotes) == 3
    clock.advance(60)
    with pytest.raises(FeedRateLimited) as info:
        await guarded.fetch(["A", "B", "C"])
    assert info.value.scope == "day" and len(adapter.calls) == 1


async def test_per_poll_limit_spreads_one_call_per_symbol_providers() -> None:
    clock = Clock()
    adapter = Scripted("alphavantage")
    guarded = GuardedProvider(
        adapter, Quota(5, 25, clock), make_breaker("av", 3, 60), clock, per_poll=1
    )
    for _ in range(3):
        await guarded.fetch(["IBM", "AAPL"])
        clock.advance(30)
    assert adapter.calls == [["IBM"], ["AAPL"], ["IBM"]]


async def test_twelvedata_credits_left_header_fills_the_minute(
    fake: FakeProviders, http: httpx.AsyncClient
) -> None:
    clock = Clock()
    adapter = TwelveDataFeed(http, KEYS["td"], fake.url("td"))
    guarded = GuardedProvider(adapter, Quota(8, 800, clock), make_breaker("td", 3, 60), clock)
    fake.state.credits_left = 0
    result = await guarded.fetch(["AAPL", "MSFT"])
    assert len(result.quotes) == 2 and result.credits_left == 0
    clock.advance(5)
    assert guarded.quota.remaining() == 0 and await guarded.fetch(["AAPL", "MSFT"]) == FetchResult()
    assert fake.state.calls["td"] == 1
