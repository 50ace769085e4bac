"""The quota ledger's contract, on every backend (the in-memory one and a real redis-server).

Times are a fixed epoch (a UTC midnight) plus offsets: the ledger takes the caller's clock, so
windows roll over without waiting; Redis only uses it for relative expiries.
"""

from __future__ import annotations

import asyncio

import pytest

from app.feeds.ledger import QuotaUsage, quota_windows
from app.pubsub.base import Backend

T0 = 1_736_899_200.0  # 2025-01-15 00:00:00 UTC


async def test_take_spends_in_both_windows_within_the_limits(backend: Backend) -> None:
    ledger = backend.quotas
    assert await ledger.take("td", T0 + 1, 5, 8, 20) == (5, QuotaUsage(5, 5))
    spent, usage = await ledger.take("td", T0 + 2, 5, 8, 20)
    assert (spent, usage) == (3, QuotaUsage(8, 8))  # the minute's room binds
    assert await ledger.take("td", T0 + 3, 1, 8, 20) == (0, QuotaUsage(8, 8))
    assert await ledger.read("td", T0 + 59) == QuotaUsage(8, 8)
    # The next minute starts afresh; the day goes on.
    assert await ledger.take("td", T0 + 60, 8, 8, 20) == (8, QuotaUsage(8, 16))
    assert await ledger.take("td", T0 + 120, 8, 8, 20) == (4, QuotaUsage(4, 20))  # the day's
    assert await ledger.take("td", T0 + 180, 1, 8, 20) == (0, QuotaUsage(0, 20))
    assert await ledger.read("td", T0 + 86_400) == QuotaUsage()  # the next UTC day


async def test_a_limit_of_zero_means_none(backend: Backend) -> None:
    assert await backend.quotas.take("fh", T0, 1000, 0, 0) == (1000, QuotaUsage(1000, 1000))
    spent, _ = await backend.quotas.take("fh", T0, 500, 1200, 0)
    assert spent == 200


async def test_providers_are_counted_apart(backend: Backend) -> None:
    await backend.quotas.take("td", T0, 3, 8, 800)
    await backend.quotas.take("fh", T0, 5, 60, 0)
    assert await backend.quotas.read("td", T0) == QuotaUsage(3, 3)
    assert await backend.quotas.read("fh", T0) == QuotaUsage(5, 5)
    assert await backend.quotas.read("av", T0) == QuotaUsage()


async def test_nothing_is_spent_while_a_stop_is_in_force(backend: Backend) -> None:
    ledger = backend.quotas
    await ledger.merge("td", T0 + 30, QuotaUsage(paused_until=T0 + 60.5))
    assert (await ledger.read("td", T0 + 40)).paused_until == pytest.approx(T0 + 60.5)
    assert (await ledger.take("td", T0 + 40, 2, 8, 800))[0] == 0
    assert (await ledger.take("td", T0 + 61, 2, 8, 800))[0] == 2  # the pause is over
    await ledger.merge("td", T0 + 70, QuotaUsage(disabled_until=T0 + 86_400))
    spent, usage = await ledger.take("td", T0 + 3600, 2, 8, 800)
    assert spent == 0 and usage.disabled_until == pytest.approx(T0 + 86_400)
    assert (await ledger.take("td", T0 + 86_400, 2, 8, 800))[0] == 2


async def test_merge_only_raises_counts_and_lengthens_stops(backend: Backend) -> None:
    ledger = backend.quotas
    await ledger.take("td", T0, 5, 8, 800)
    await ledger.merge("td", T0, QuotaUsage(3, 3, T0 + 50, 0.0))
    assert await ledger.read("td", T0) == QuotaUsage(5, 5, T0 + 50, 0.0)
    await ledger.merge("td", T0, QuotaUsage(8, 6, T0 + 40, T0 - 1))  # an earlier pause; a stop over
    assert await ledger.read("td", T0) == QuotaUsage(8, 6, T0 + 50, 0.0)
    await ledger.merge("td", T0, QuotaUsage(0, 0, T0 + 55, 0.0))
    assert await ledger.read("td", T0) == QuotaUsage(8, 6, T0 + 55, 0.0)


async def test_give_back_undoes_a_take_but_never_goes_below_zero(backend: Backend) -> None:
    ledger = backend.quotas
    await ledger.take("td", T0, 5, 8, 800)
    await ledger.give_back("td", T0, 2)
    assert await ledger.read("td", T0) == QuotaUsage(3, 3)
    await ledger.give_back("td", T0, 10)
    assert await ledger.read("td", T0) == QuotaUsage(0, 0)
    await ledger.give_back("td", T0 + 60, 1)  # a window with nothing spent stays at nothing
    assert await ledger.read("td", T0 + 60) == QuotaUsage(0, 0)


async def test_concurrent_takes_never_overspend(backend: Backend) -> None:
    results = await asyncio.gather(*(backend.quotas.take("td", T0, 1, 8, 800) for _ in range(30)))
    assert sum(spent for spent, _ in results) == 8
    assert await backend.quotas.read("td", T0) == QuotaUsage(8, 8)


def test_windows_are_the_wall_clock_minute_and_the_utc_day() -> None:
    assert quota_windows(T0) == (int(T0) // 60, int(T0) // 86_400)
    assert quota_windows(T0 - 0.001) == (int(T0) // 60 - 1, int(T0) // 86_400 - 1)
