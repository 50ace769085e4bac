"""Quota counted in the shared ledger: a fetcher after a failover goes on from the last one's count.

Each "fetcher" is what a replica builds when it takes the lease: a fresh `GuardedProvider` and
`Quota` (nothing kept in its memory) over the same ledger, on the memory backend and on a real
redis-server. The clock is driven by hand; Redis only uses it for relative expiries.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from app.feeds.base import FeedRateLimited
from app.feeds.chain import FeedChain
from app.feeds.guard import GuardedProvider, QuotaBlocked, make_breaker
from app.feeds.ledger import QuotaLedger, QuotaUsage
from app.feeds.quota import Quota
from app.fetcher import Fetcher
from app.pubsub import open_backend
from tests.feeds.scripted import Clock, Scripted
from tests.support import RedisServer

SYMBOLS = [f"S{i}" for i in range(19)]


@pytest.fixture(params=["memory", "redis"])
async def quotas(request: pytest.FixtureRequest) -> AsyncIterator[QuotaLedger]:
    url = "memory://" if request.param == "memory" else request.getfixturevalue("redis_url")
    async with open_backend(url, registry_ttl=1.0, client_name="quota") as backend:
        yield backend.quotas


def fetcher(
    quotas: QuotaLedger, clock: Clock, per_minute: int = 8, per_day: int = 20
) -> tuple[GuardedProvider, Scripted]:
    """A new fetcher of provider `td`: what a replica builds when it takes over."""
    adapter = Scripted("td")
    quota = Quota(per_minute, per_day, clock, ledger=quotas, provider="td")
    return GuardedProvider(adapter, quota, make_breaker("td", 3, 60), clock), adapter


def spent(*adapters: Scripted) -> int:
    return sum(len(call) for adapter in adapters for call in adapter.calls)


async def test_a_new_fetcher_goes_on_from_the_previous_ones_count(quotas: QuotaLedger) -> None:
    clock = Clock()
    first, a = fetcher(quotas, clock)
    assert len((await first.fetch(SYMBOLS)).quotes) == 8
    clock.advance(60)
    assert len((await first.fetch(SYMBOLS)).quotes) == 8
    clock.advance(60)
    # Failover: the next fetcher starts with nothing in memory, yet knows 16 of 20 are gone.
    second, b = fetcher(quotas, clock)
    assert len((await second.fetch(SYMBOLS)).quotes) == 4
    assert second.quota.describe()["used_today"] == 20
    clock.advance(60)
    with pytest.raises(QuotaBlocked) as info:
        await second.fetch(SYMBOLS)
    assert info.value.scope == "day"
    assert spent(a, b) == 20  # the day's budget, across both fetchers
    assert (spent(a), spent(b)) == (16, 4)


async def test_the_providers_stop_signals_reach_the_next_fetcher(quotas: QuotaLedger) -> None:
    clock = Clock()
    clock.advance(10)
    first, a = fetcher(quotas, clock, per_minute=100, per_day=1000)
    a.fail = FeedRateLimited("td: minute", 0, "minute")
    with pytest.raises(FeedRateLimited):
        await first.fetch(["A"])
    second, b = fetcher(quotas, clock, per_minute=100, per_day=1000)
    with pytest.raises(QuotaBlocked) as info:  # paused until the next minute: no call
        await second.fetch(["A"])
    assert info.value.scope == "minute" and info.value.retry_after == pytest.approx(50)
    assert b.calls == []
    clock.advance(50)
    assert (await second.fetch(["A"])).quotes
    b.fail = FeedRateLimited("td: day", 0, "day")
    with pytest.raises(FeedRateLimited):
        await second.fetch(["A"])
    third, c = fetcher(quotas, clock, per_minute=100, per_day=1000)
    clock.advance(3600)
    with pytest.raises(QuotaBlocked, match="day quota"):  # disabled until UTC midnight
        await third.fetch(["A"])
    assert c.calls == [] and third.breaker.current_state == "closed"
    clock.advance(86_400)
    assert (await third.fetch(["A"])).quotes


async def test_overlapping_fetchers_never_overspend(quotas: QuotaLedger) -> None:
    clock = Clock()
    old = Quota(8, 800, clock, ledger=quotas, provider="td")  # paused past its lease, say
    new = Quota(8, 800, clock, ledger=quotas, provider="td")
    await old.sync()
    await new.sync()
    assert old.remaining() == new.remaining() == 8  # both believe the minute is theirs
    assert await new.take(6) == 6
    assert await old.take(6) == 2  # the shared count decides, atomically
    assert (old.used_minute, new.used_minute) == (8, 6)
    assert await quotas.read("td", clock()) == QuotaUsage(8, 8)


async def test_a_view_is_current_only_while_it_is_synced(quotas: QuotaLedger) -> None:
    clock = Clock()
    follower = Quota(8, 800, clock, ledger=quotas, provider="td", fresh_for=10)
    assert not follower.describe()["current"]  # never synced: it knows nothing
    await follower.sync()
    assert follower.describe()["current"] and follower.describe()["shared"]
    clock.advance(11)
    assert not follower.current()
    assert Quota(8, 800, clock).current()  # without a ledger its own count is the truth


async def test_no_call_while_the_shared_quota_is_unreachable(
    redis_url: str, redis_server: RedisServer
) -> None:
    clock = Clock()
    async with open_backend(redis_url, registry_ttl=1.0, client_name="quota") as backend:
        guarded, adapter = fetcher(backend.quotas, clock, per_minute=100, per_day=1000)
        chain = FeedChain([guarded], clock)
        assert (await chain.fetch(["A"])).quotes
        redis_server.stop()
        for _ in range(3):
            clock.advance(2)
            assert (await chain.fetch(["A"])).quotes == []
            status = chain.status()
            assert (status.state, status.reason) == ("stale", "quota_unknown")
        # Nothing was sent, and an unreachable ledger is no reason to distrust the provider.
        assert len(adapter.calls) == 1 and guarded.breaker.current_state == "closed"
        assert guarded.describe()["calls"] == {"ok": 1, "quota_unknown": 3}
        redis_server.start()  # empty: it kept nothing on disk
        clock.advance(2)
        assert (await chain.fetch(["A"])).quotes and chain.status().state == "live"
        # The count the restart lost was written back from this fetcher's view.
        assert await backend.quotas.read("td", clock()) == QuotaUsage(2, 2)


async def test_the_fetch_loop_survives_an_unreachable_quota(
    redis_url: str, redis_server: RedisServer
) -> None:
    async with open_backend(redis_url, registry_ttl=1.0, client_name="quota") as backend:
        guarded, adapter = fetcher(backend.quotas, Clock(), per_minute=100_000, per_day=0)
        loop = Fetcher(FeedChain([guarded]), backend, interval=1.0, board=["AAPL"])
        await loop.tick()
        assert loop.last_error is None and loop.published == 1
        redis_server.stop()
        await loop.tick()  # logs, never raises
        assert loop.last_error is not None and len(adapter.calls) == 1
        assert loop.status.reason == "quota_unknown"
        redis_server.start()
        await loop.tick()
        assert loop.last_error is None and len(adapter.calls) == 2
