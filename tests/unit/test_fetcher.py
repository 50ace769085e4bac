"""The fetch loop on the in-memory backend and the simulated feed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import orjson
import pytest

from app.feeds.base import FetchResult
from app.feeds.simulated import SimulatedFeed
from app.fetcher import Fetcher
from app.models import LIVE, FeedStatus, decode_quote, parse_update
from app.pubsub import open_backend
from app.pubsub.base import UPDATES_CHANNEL, Backend, Message


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    async with open_backend("memory://", registry_ttl=5, client_name="test") as b:
        yield b


SENTINEL = b'{"epoch":0,"quotes":[]}'


async def drain(backend: Backend, queue: asyncio.Queue[Message]) -> list[Message]:
    """Everything published so far: publish a sentinel and read up to it (the bus keeps order)."""
    await backend.bus.publish(UPDATES_CHANNEL, SENTINEL)
    out = []
    while (message := await asyncio.wait_for(queue.get(), 5)).data != SENTINEL:
        out.append(message)
    return out


async def collect(backend: Backend) -> tuple[asyncio.Queue[Message], asyncio.Task[None]]:
    queue: asyncio.Queue[Message] = asyncio.Queue()
    ready = asyncio.Event()

    async def run() -> None:
        async for message in backend.bus.listen([UPDATES_CHANNEL], lambda up: ready.set()):
            queue.put_nowait(message)

    task = asyncio.create_task(run())
    await asyncio.wait_for(ready.wait(), 5)
    return queue, task


async def test_publishes_changed_quotes_with_growing_seq(backend: Backend) -> None:
    queue, task = await collect(backend)
    fetcher = Fetcher(SimulatedFeed(seed=1), backend, interval=1.0, board=["TCS", "AAPL"])
    await fetcher.tick()
    first = orjson.loads((await asyncio.wait_for(queue.get(), 5)).data)
    assert {q["symbol"] for q in first["quotes"]} == {"TCS", "AAPL"}
    assert all(q["seq"] == 1 and q["epoch"] == fetcher.epoch for q in first["quotes"])
    seqs = {"TCS": 1, "AAPL": 1}
    for _ in range(20):
        await fetcher.tick()
    for message in await drain(backend, queue):
        for q in orjson.loads(message.data)["quotes"]:
            assert q["seq"] == seqs[q["symbol"]] + 1
            seqs[q["symbol"]] = q["seq"]
    assert all(seq > 3 for seq in seqs.values())
    assert fetcher.alive() and fetcher.last_error is None
    stored = await backend.snapshots.get(["TCS"])
    assert decode_quote(stored["TCS"]).seq == seqs["TCS"]
    task.cancel()


async def test_unchanged_quotes_are_confirmed_not_republished(backend: Backend) -> None:
    class Frozen(SimulatedFeed):
        def _step(self, walk: object) -> None:  # prices never move
            return None

    queue, task = await collect(backend)
    fetcher = Fetcher(Frozen(seed=1), backend, interval=1.0, board=["TCS"])
    await fetcher.tick()
    await fetcher.tick()
    await fetcher.tick()
    first, *later = [parse_update(m.data) for m in await drain(backend, queue)]
    assert [q.seq for q in first.quotes] == [1] and first.confirmed == ()
    # Priced again at the same price: no quote (no seq spent), but confirmed still current.
    assert len(later) == 2
    for update in later:
        assert update.quotes == [] and update.confirmed == ("TCS",)
        assert update.confirmed_at >= first.quotes[0].published_at
    assert decode_quote((await backend.snapshots.get(["TCS"]))["TCS"]).seq == 1
    task.cancel()


async def test_watched_symbols_are_fetched_and_unknown_ones_skipped(backend: Backend) -> None:
    await backend.registry.report("other-replica", {"INFY": 2, "NOPE": 1})
    queue, task = await collect(backend)
    fetcher = Fetcher(SimulatedFeed(seed=1), backend, interval=1.0, board=["TCS"])
    await fetcher.tick()
    got = {q["symbol"] for q in orjson.loads((await queue.get()).data)["quotes"]}
    assert got == {"TCS", "INFY"}
    assert fetcher.watched == {"INFY", "NOPE"}
    task.cancel()


async def test_a_new_fetcher_term_continues_seq_in_a_later_epoch(backend: Backend) -> None:
    first = Fetcher(SimulatedFeed(seed=1), backend, interval=1.0, board=["TCS"], replica_id="a")
    for _ in range(5):
        await first.tick()
    before = decode_quote((await backend.snapshots.get(["TCS"]))["TCS"])
    second = Fetcher(SimulatedFeed(seed=99), backend, interval=1.0, board=["TCS"], replica_id="b")
    await second.tick()
    assert second.role == "follower"  # "a" holds the lease
    await first.release()
    await second.tick()
    assert second.role == "leader"
    after = decode_quote((await backend.snapshots.get(["TCS"]))["TCS"])
    assert after.epoch > before.epoch
    assert after.seq == before.seq + 1


async def test_a_fetcher_that_lost_its_lease_cannot_publish(backend: Backend) -> None:
    queue, task = await collect(backend)
    old = Fetcher(SimulatedFeed(seed=1), backend, interval=1.0, board=["TCS"], replica_id="a")
    await old.tick()
    await drain(backend, queue)
    await backend.lease.release(old.holder, old.term or 0)  # as if it expired while "a" slept
    new = Fetcher(SimulatedFeed(seed=2), backend, interval=1.0, board=["TCS"], replica_id="b")
    await new.tick()
    assert new.role == "leader"
    # "a" wakes up and publishes with its old term before it renews: the fence refuses it.
    for _ in range(50):  # until the simulated price moves, so there is something to publish
        await old._fetch_and_publish(["TCS"])
        if old.role == "follower":
            break
    assert old.role == "follower"
    epochs = {orjson.loads(m.data)["epoch"] for m in await drain(backend, queue)}
    assert epochs == {new.epoch}
    task.cancel()


async def test_a_newly_watched_symbol_is_fetched_before_the_next_tick(backend: Backend) -> None:
    queue, task = await collect(backend)
    fetcher = Fetcher(SimulatedFeed(seed=1), backend, interval=30.0, board=["TCS"])
    runner = asyncio.create_task(fetcher.run())
    await asyncio.wait_for(queue.get(), 5)  # the first tick
    from app.pubsub.base import SUBSCRIPTIONS_CHANNEL

    async def announce() -> None:
        await backend.bus.publish(SUBSCRIPTIONS_CHANNEL, b'{"added":["MSFT"],"removed":[]}')

    message = None
    for _ in range(250):  # the listener may not be subscribed yet: announce until heard
        await announce()
        try:
            message = await asyncio.wait_for(queue.get(), 0.02)
            break
        except TimeoutError:
            continue
    assert message is not None
    assert [q["symbol"] for q in orjson.loads(message.data)["quotes"]] == ["MSFT"]
    runner.cancel()
    task.cancel()
    await asyncio.gather(runner, task, return_exceptions=True)


async def test_new_symbols_cannot_spend_the_shared_quota(backend: Backend) -> None:
    from app.feeds.chain import FeedChain
    from app.feeds.guard import GuardedProvider, make_breaker
    from app.feeds.quota import Quota
    from tests.feeds.scripted import Scripted

    adapter = Scripted("td")
    provider = GuardedProvider(adapter, Quota(1_000_000, 0), make_breaker("td", 3, 60.0))
    fetcher = Fetcher(
        FeedChain([provider]), backend, interval=1.0, board=["AAPL"], new_symbols_per_minute=2
    )
    junk = {f"JUNK{i}": 1 for i in range(10)}
    await backend.registry.report("a-client's-replica", junk)
    await fetcher.tick()
    await fetcher.tick()
    asked = {s for call in adapter.calls for s in call}
    assert "AAPL" in asked
    assert len(asked - {"AAPL"}) == 2, asked  # the board, and only the new-symbol budget


class SlowFeed:
    """A real provider's round trip, for symbols only it can judge."""

    name = "slow"

    def check_symbol(self, symbol: str) -> str | None:
        return None

    async def fetch(self, symbols: Sequence[str]) -> FetchResult:
        await asyncio.sleep(0.1)
        return FetchResult(rejected={s: "unknown" for s in symbols if s.startswith("JUNK")})

    def status(self) -> FeedStatus:
        return LIVE

    def refresh_interval(self, symbols: int, poll_interval: float) -> float:
        return poll_interval

    def describe(self) -> dict[str, object]:
        return {}


async def test_early_fetches_never_starve_the_regular_tick(backend: Backend) -> None:
    fetcher = Fetcher(
        SlowFeed(), backend, interval=0.25, board=["AAPL"], new_symbols_per_minute=1e5
    )
    runner = asyncio.create_task(fetcher.run())
    counter = iter(range(10**6))

    async def flood() -> None:  # a client subscribing to a new made-up symbol all the time
        while True:
            fetcher._urgent.add(f"JUNK{next(counter)}")
            fetcher._wake.set()
            await asyncio.sleep(0.05)

    flooding = asyncio.create_task(flood())
    deadline = asyncio.get_running_loop().time() + 10
    start = fetcher.ticks
    while fetcher.ticks < start + 5:
        assert asyncio.get_running_loop().time() < deadline, "regular ticks starved"
        await asyncio.sleep(0.05)
    for task in (flooding, runner):
        task.cancel()
    await asyncio.gather(flooding, runner, return_exceptions=True)
