"""Alerts evaluated by the fetcher that holds the lease: once per crossing, fenced like the
quotes' publish, and neither lost nor doubled by a fetcher failover (real Redis where there are
two replicas; the memory bus's one-process cluster too where it applies)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import orjson
import pytest

from app.alerts import evaluator as evaluator_module
from app.alerts.evaluator import AlertEvaluator
from app.alerts.model import Alert, State
from app.alerts.store import AlertStore, Applied, Change, Due
from app.fetcher import Fetcher
from app.pubsub.base import BusUnavailable
from tests.alerts.conftest import PricedFeed, Replica, alert
from tests.feeds.scripted import quote
from tests.support import eventually


def fetcher(replica: Replica, feed: PricedFeed, name: str, *, alerts: bool = True) -> Fetcher:
    return Fetcher(
        feed, replica.backend, interval=1.0, board=["AAPL"], replica_id=name,
        alerts=replica.alerts.evaluator if alerts else None,
    )  # fmt: skip


async def tick(f: Fetcher) -> None:
    """One fetch tick, then the evaluation of what it published (the evaluator's loop's run)."""
    await f.tick()
    if f.alerts is not None:
        await f.alerts.evaluate()


async def fired_prices(replica: Replica, owner: str = "anon:a") -> list[str]:
    return [orjson.loads(m)["price"] for m in await replica.alerts.store.inbox(owner)]


async def test_a_price_oscillating_around_the_level_fires_once(replicas: list[Replica]) -> None:
    one = replicas[0]
    feed = PricedFeed({"AAPL": "100"})
    f = fetcher(one, feed, "a")
    await tick(f)
    await one.alerts.store.add(alert(value="110"), 3)
    # Hovering at 110: fires at the first touch only. Re-arms at 110 × (1 − 0.5 %) = 109.45.
    for price in ["110", "109.9", "110.2", "109.5", "110.05", "111", "109.8"]:
        feed.prices["AAPL"] = price
        await tick(f)
    assert await fired_prices(one) == ["110"]
    for price in ["109.45", "110.3", "109.9", "110.4"]:  # back by the band, then a new crossing
        feed.prices["AAPL"] = price
        await tick(f)
    assert await fired_prices(one) == ["110", "110.3"]
    [(a, _)] = await one.alerts.store.for_symbols(["AAPL"])
    assert a.fired == 2 and a.state is State.FIRED
    assert one.alerts.evaluator.fired == 2


async def test_alerts_are_evaluated_only_for_symbols_that_have_them(
    replicas: list[Replica],
) -> None:
    one = replicas[0]
    feed = PricedFeed({"AAPL": "100", "MSFT": "50"})
    f = Fetcher(
        feed, one.backend, interval=1.0, board=["AAPL", "MSFT"], alerts=one.alerts.evaluator
    )
    await one.alerts.store.add(alert(symbol="MSFT", value="60", last="50"), 3)
    await tick(f)
    assert one.alerts.evaluator.symbols == {"MSFT"}
    feed.prices["MSFT"] = "61"
    await tick(f)
    assert await fired_prices(one) == ["61"]


@pytest.mark.parametrize("kind", ["redis", "redis-db1"], indirect=True)
async def test_a_failover_between_crossing_and_publish_fires_once(
    replicas: list[Replica],
) -> None:
    a_side, b_side = replicas
    feed_a, feed_b = PricedFeed({"AAPL": "100"}), PricedFeed({"AAPL": "100"})
    a, b = fetcher(a_side, feed_a, "a"), fetcher(b_side, feed_b, "b")
    await tick(a)
    assert a.term is not None
    await a_side.alerts.store.add(alert(value="110"), 3)
    await tick(b)
    assert b.term is None  # a follower
    # A fetches the crossing price, then stalls before publishing; its lease runs out and B
    # takes over (fetching the same price), then A wakes up and tries to publish.
    feed_a.prices["AAPL"] = feed_b.prices["AAPL"] = "111"
    feed_a.gate = asyncio.Event()
    feed_a.fetching.clear()
    stalled = asyncio.create_task(a.tick())
    await asyncio.wait_for(feed_a.fetching.wait(), 5)
    old_term = a.term
    await _expire_lease(a_side)  # as if A paused past its lease TTL
    # A's evaluation in its old term, had it got that far, changes nothing:
    a_side.alerts.evaluator.published(old_term, [quote("AAPL", "scripted", "111")])
    await a_side.alerts.evaluator.evaluate()
    assert await fired_prices(a_side) == []
    await tick(b)
    assert b.term is not None and b.term != old_term
    assert await fired_prices(b_side) == ["111"]
    feed_a.gate.set()
    await stalled
    assert a.term is None  # its publish was refused: it knows it is deposed
    for _ in range(3):
        await tick(b)
    assert await fired_prices(b_side) == ["111"]  # once, not lost, not doubled


@pytest.mark.parametrize("kind", ["redis"], indirect=True)
async def test_a_fetcher_dying_after_its_publish_loses_no_crossing(
    replicas: list[Replica],
) -> None:
    a_side, b_side = replicas
    feed_a, feed_b = PricedFeed({"AAPL": "100"}), PricedFeed({"AAPL": "111"})
    # A publishes the crossing price and dies before evaluating anything.
    a = fetcher(a_side, feed_a, "a", alerts=False)
    await tick(a)
    await a_side.alerts.store.add(alert(value="110"), 3)
    feed_a.prices["AAPL"] = "111"
    await tick(a)
    await _expire_lease(a_side)
    # B takes over; the price stays at 111, so nothing new is published for AAPL: B catches
    # up on the stored snapshot at the start of its term.
    b = fetcher(b_side, feed_b, "b")
    for _ in range(3):
        await tick(b)
    assert await fired_prices(b_side) == ["111"]


@pytest.mark.parametrize("kind", ["redis"], indirect=True)
async def test_a_crossing_left_by_a_dead_fetcher_fires_once_though_the_price_moved_back(
    replicas: list[Replica],
) -> None:
    a_side, b_side = replicas
    feed_a, feed_b = PricedFeed({"AAPL": "100"}), PricedFeed({"AAPL": "108"})
    a = fetcher(a_side, feed_a, "a", alerts=False)
    await tick(a)
    await a_side.alerts.store.add(alert(value="110"), 3)
    feed_a.prices["AAPL"] = "111"
    await tick(a)  # published 111, died before evaluating
    await _expire_lease(a_side)
    # B's first publish (108) overwrites the stored 111: the crossing is only in what B read
    # before it.
    b = fetcher(b_side, feed_b, "b")
    for _ in range(3):
        await tick(b)
    assert await fired_prices(b_side) == ["111"]


async def test_a_failed_evaluation_steps_through_every_quote_it_missed(
    replicas: list[Replica],
) -> None:
    one = replicas[0]
    store = FlakyStore(one.alerts.store)
    evaluator = AlertEvaluator(store, Decimal("0.5"))
    feed = PricedFeed({"AAPL": "100"})
    f = Fetcher(feed, one.backend, interval=1.0, board=["AAPL"], alerts=evaluator)
    await tick(f)
    await store.add(alert(value="110"), 3)
    store.down = True
    for price in ["111", "108"]:  # crossed, then back below (re-arming) while Redis was away
        feed.prices["AAPL"] = price
        await tick(f)
    assert evaluator.failures >= 1 and await fired_prices(one) == []
    store.down = False
    feed.prices["AAPL"] = "107"
    await tick(f)
    assert await fired_prices(one) == ["111"]
    [(a, _)] = await store.for_symbols(["AAPL"])
    assert a.state is State.ARMED and a.fired == 1  # fired at 111, re-armed at 108
    assert evaluator.fired == 1 and evaluator.rearmed == 1


async def test_what_waits_for_evaluation_is_bounded(replicas: list[Replica]) -> None:
    one = replicas[0]
    store = FlakyStore(one.alerts.store)
    evaluator = AlertEvaluator(store, Decimal("0.5"))
    await store.add(alert(value="110"), 3)
    evaluator.published(1, [quote("AAPL", "scripted", "100")])
    await evaluator.evaluate()  # reads which symbols have alerts
    assert evaluator.symbols == {"AAPL"}
    store.down = True
    for n in range(evaluator_module.PENDING_PER_SYMBOL + 50):
        evaluator.published(1, [quote("AAPL", "scripted", "100"), quote("MSFT", "s", str(n))])
    assert evaluator.pending == (
        evaluator_module.PENDING_PER_SYMBOL + evaluator_module.PENDING_UNALERTED
    )
    assert evaluator.dropped == 50  # only quotes of symbols with alerts count


class StuckStore:
    """The real store, but reading due alerts hangs until `gate` opens (Redis slow)."""

    def __init__(self, real: AlertStore) -> None:
        self.real = real
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    async def due(self, prices: Mapping[str, Decimal], limit: int) -> Due:
        self.entered.set()
        await self.gate.wait()
        return await self.real.due(prices, limit)


async def test_a_slow_evaluation_never_delays_the_fetch_loop(replicas: list[Replica]) -> None:
    one = replicas[0]
    store = StuckStore(one.alerts.store)
    evaluator = AlertEvaluator(store, Decimal("0.5"))
    feed = PricedFeed({"AAPL": "100"})
    f = Fetcher(feed, one.backend, interval=1.0, board=["AAPL"], alerts=evaluator)
    await f.tick()
    await store.add(alert(value="110"), 3)
    loop = asyncio.create_task(evaluator.run())
    try:
        feed.prices["AAPL"] = "111"
        await f.tick()
        await asyncio.wait_for(store.entered.wait(), 5)
        for price in ["112", "108"]:
            feed.prices["AAPL"] = price
            await asyncio.wait_for(f.tick(), 5)  # not held by the evaluation in progress
        assert f.last_error is None and not store.gate.is_set()
        store.gate.set()

        async def fired() -> bool:
            return await fired_prices(one) == ["111"]

        await eventually(fired, 10, "the alert, once the store answers")
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)


async def test_more_due_alerts_than_a_batch_all_fire_on_one_price(
    replicas: list[Replica], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "app.alerts.evaluator")
    monkeypatch.setattr(evaluator_module, "DUE_LIMIT", 2)
    monkeypatch.setattr(evaluator_module, "APPLY_BATCH", 2)
    one = replicas[0]
    feed = PricedFeed({"AAPL": "100"})
    f = fetcher(one, feed, "a")
    await tick(f)
    owners = [f"anon:{n}" for n in range(5)]
    for n, owner in enumerate(owners):
        await one.alerts.store.add(alert(owner=owner, value=f"10{n + 1}"), 3)
    feed.prices["AAPL"] = "106"
    await tick(f)
    for owner in owners:
        assert await fired_prices(one, owner) == ["106"]
    assert one.alerts.evaluator.fired == 5
    # Firings are logged within the log budget (app.logbudget): not a line each.
    lines = [r for r in caplog.records if r.getMessage().startswith("alert fired")]
    assert len(lines) <= 1


class FlakyStore:
    """The real store, but `for_symbols` fails while `down` (a Redis blip, in-process)."""

    def __init__(self, real: AlertStore) -> None:
        self.real = real
        self.down = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    async def for_symbols(self, symbols: Sequence[str]) -> list[tuple[Alert, bytes]]:
        if self.down:
            raise BusUnavailable("redis went away")
        return await self.real.for_symbols(symbols)

    async def apply(self, token: int, changes: Sequence[Change]) -> Applied | None:
        if self.down:
            raise BusUnavailable("redis went away")
        return await self.real.apply(token, changes)


async def test_a_failed_evaluation_is_caught_up_on(replicas: list[Replica]) -> None:
    one = replicas[0]
    store = FlakyStore(one.alerts.store)
    evaluator = AlertEvaluator(store, Decimal("0.5"))
    feed = PricedFeed({"AAPL": "100", "MSFT": "50"})
    f = Fetcher(feed, one.backend, interval=1.0, board=["AAPL", "MSFT"], alerts=evaluator)
    await tick(f)
    await store.add(alert(value="110"), 3)
    store.down = True
    feed.prices["AAPL"] = "111"
    await tick(f)  # published, but the evaluation failed
    assert evaluator.failures == 1 and await fired_prices(one) == []
    store.down = False
    feed.prices["MSFT"] = "51"  # AAPL stays at 111: only the catch-up can see its crossing
    await tick(f)
    assert await fired_prices(one) == ["111"]


async def _expire_lease(replica: Replica) -> None:
    client = replica.alerts.store._client  # type: ignore[attr-defined]
    await client.delete(replica.backend.prefix + "fetcher:lease")


@pytest.mark.parametrize("kind", ["redis"], indirect=True)
async def test_a_malformed_stored_alert_stops_no_other(replicas: list[Replica]) -> None:
    one = replicas[0]
    client = one.alerts.store._client  # type: ignore[attr-defined]
    await client.hset("alerts:all", "junk", b'{"id": "junk"}')
    await client.zadd("alerts:rise:AAPL", {"junk": 1})
    await client.sadd("alerts:symbols", "AAPL")
    feed = PricedFeed({"AAPL": "100"})
    f = fetcher(one, feed, "a")
    await tick(f)
    await one.alerts.store.add(alert(value="110"), 3)
    feed.prices["AAPL"] = "111"
    await tick(f)
    assert await fired_prices(one) == ["111"]
    assert one.alerts.evaluator.failures == 0
