"""One contract, every backend: the in-memory adapters and Redis (a real redis-server)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from app.pubsub import open_backend
from app.pubsub.base import Backend, LeaseHolder, Message
from tests.pubsub.conftest import backend_url, raw_messages

CHANNELS = ["market-data:updates", "market-data:control"]


class Listener:
    """A listener running in the background, ready once subscribed."""

    def __init__(self, backend: Backend, channels: list[str]) -> None:
        self.messages: asyncio.Queue[Message] = asyncio.Queue()
        self.ready = asyncio.Event()
        self._task = asyncio.create_task(self._run(backend, channels))

    async def _run(self, backend: Backend, channels: list[str]) -> None:
        async for message in backend.bus.listen(channels, lambda up: self.ready.set()):
            self.messages.put_nowait(message)

    async def __aenter__(self) -> Listener:
        await asyncio.wait_for(self.ready.wait(), 5)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def get(self) -> Message:
        return await asyncio.wait_for(self.messages.get(), 5)


async def test_publish_reaches_a_listener_in_order_and_binary_safe(backend: Backend) -> None:
    raw_messages(backend)
    payloads = [b"\x00\xff binary", "₹ utf-8".encode(), b"", b"x" * 100_000]
    async with Listener(backend, CHANNELS) as listener:
        for data in payloads:
            await backend.bus.publish(CHANNELS[0], data)
        got = [await listener.get() for _ in payloads]
    assert [m.data for m in got] == payloads
    assert {m.channel for m in got} == {CHANNELS[0]}


async def test_every_listener_gets_every_message_of_its_channels(backend: Backend) -> None:
    raw_messages(backend)
    async with Listener(backend, CHANNELS) as both, Listener(backend, CHANNELS[1:]) as control:
        await backend.bus.publish(CHANNELS[0], b"quote")
        await backend.bus.publish(CHANNELS[1], b"beat")
        assert [(await both.get()).data, (await both.get()).data] == [b"quote", b"beat"]
        message = await control.get()
        assert (message.channel, message.data) == (CHANNELS[1], b"beat")
        assert control.messages.empty()


async def test_publish_without_listeners_is_fine(backend: Backend) -> None:
    await backend.bus.publish("market-data:nobody", b"x")
    assert await backend.bus.ping()


async def test_snapshots_store_the_latest_bytes(backend: Backend) -> None:
    await backend.snapshots.put({"TCS": b"1", "INFY": b"2"})
    await backend.snapshots.put({"TCS": b"3"})
    assert await backend.snapshots.get(["TCS", "NOPE", "INFY"]) == {"TCS": b"3", "INFY": b"2"}
    assert await backend.snapshots.get([]) == {}
    assert await backend.snapshots.get_all() == {"TCS": b"3", "INFY": b"2"}


async def test_registry_sums_replicas_and_forgets_withdrawn_ones(backend: Backend) -> None:
    await backend.registry.report("a", {"TCS": 2, "INFY": 1, "GONE": 0})
    await backend.registry.report("b", {"TCS": 1, "NIFTY 50": 3})
    assert await backend.registry.reconcile() == {"TCS": 3, "INFY": 1, "NIFTY 50": 3}
    await backend.registry.report("a", {"INFY": 1})
    await backend.registry.withdraw("b")
    assert await backend.registry.reconcile() == {"INFY": 1}
    await backend.registry.report("a", {})
    assert await backend.registry.reconcile() == {}


async def test_registry_entries_expire_with_the_lease(backend: Backend) -> None:
    await backend.registry.report("dead", {"TCS": 1})
    await backend.registry.report("alive", {"INFY": 1})
    assert await backend.registry.reconcile() == {"TCS": 1, "INFY": 1}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    # "alive" renews its lease as a replica would; "dead" stopped reporting.
    while (totals := await backend.registry.reconcile()) != {"INFY": 1}:
        assert loop.time() < deadline, f"dead replica never expired: {totals}"
        await backend.registry.report("alive", {"INFY": 1})
        await asyncio.sleep(0.05)


async def test_lease_is_exclusive_renewable_and_tokens_grow(backend: Backend) -> None:
    lease = backend.lease
    token = await lease.acquire("a")
    assert token is not None
    assert await lease.acquire("a") == token  # renewal keeps the term
    assert await lease.acquire("b") is None
    await lease.release("b", token)  # not b's to release
    assert await lease.acquire("b") is None
    await lease.release("a", token)
    second = await lease.acquire("b")
    assert second is not None and second > token
    assert await lease.acquire("a") is None


async def test_peek_names_the_holder_and_its_term_without_touching_the_lease(
    backend: Backend,
) -> None:
    lease = backend.lease
    assert await lease.peek() is None
    token = await lease.acquire("a:1")
    assert token is not None
    assert await lease.peek() == LeaseHolder("a:1", token)
    assert await lease.acquire("b:2") is None  # peeking took nothing from the holder
    await lease.release("a:1", token)
    assert await lease.peek() is None
    second = await lease.acquire("b:2")
    assert second is not None
    assert await lease.peek() == LeaseHolder("b:2", second)


async def test_lease_publish_is_fenced(backend: Backend) -> None:
    raw_messages(backend)
    lease = backend.lease
    token = await lease.acquire("a")
    assert token is not None
    async with Listener(backend, ["market-data:updates"]) as listener:
        assert await lease.publish(token, {"TCS": b"q1"}, "market-data:updates", b"m1")
        assert (await listener.get()).data == b"m1"
        await lease.release("a", token)
        newer = await lease.acquire("b")
        assert newer is not None
        assert not await lease.publish(token, {"TCS": b"stale"}, "market-data:updates", b"old")
        assert await lease.publish(newer, {"TCS": b"q2"}, "market-data:updates", b"m2")
        assert (await listener.get()).data == b"m2"
    assert await backend.snapshots.get(["TCS"]) == {"TCS": b"q2"}


# The chart's history: appended only through the fenced publish, capped per symbol, expiring.

HISTORY_POINTS = 3
EMPTY = b'{"epoch":1,"quotes":[]}'  # an update with no quotes (a cluster splits updates by shard)
HISTORY_TTL = 0.5


@pytest.fixture(params=["memory", "redis", "redis-db1"])
async def small(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    """A backend whose history keeps 3 points per symbol for half a second after the last."""
    url = backend_url(request.param, request)
    async with open_backend(
        url,
        registry_ttl=1.0,
        client_name="contract",
        history_points=HISTORY_POINTS,
        history_ttl=HISTORY_TTL,
    ) as b:
        yield b


async def _publish_points(backend: Backend, token: int, points: dict[str, bytes]) -> bool:
    return await backend.lease.publish(token, {}, "market-data:updates", EMPTY, history=points)


async def test_history_keeps_the_newest_points_per_symbol_oldest_first(small: Backend) -> None:
    token = await small.lease.acquire("a")
    assert token is not None
    assert await small.history.read("TCS") == []
    for n in range(1, 6):
        assert await _publish_points(small, token, {"TCS": b"%d 10.%d" % (n, n)})
    assert await _publish_points(small, token, {"NIFTY 50": b"\x00\xff binary \xe2\x82\xb9"})
    assert await small.history.read("TCS") == [b"3 10.3", b"4 10.4", b"5 10.5"]
    assert await small.history.read("NIFTY 50") == [b"\x00\xff binary \xe2\x82\xb9"]
    assert await small.history.read("NOPE") == []


async def test_history_goes_with_snapshot_and_message_in_one_publish(small: Backend) -> None:
    token = await small.lease.acquire("a")
    assert token is not None
    async with Listener(small, ["market-data:updates"]) as listener:
        assert await small.lease.publish(
            token, {"TCS": b"q1"}, "market-data:updates", b"m1", history={"TCS": b"1 10"}
        )
        assert (await listener.get()).data == b"m1"
    assert await small.snapshots.get(["TCS"]) == {"TCS": b"q1"}
    assert await small.history.read("TCS") == [b"1 10"]
    # Without history entries (the argument is optional) nothing is appended.
    assert await small.lease.publish(token, {"TCS": b"q2"}, "market-data:updates", b"m2")
    assert await small.history.read("TCS") == [b"1 10"]


async def test_a_deposed_fetcher_appends_no_history(small: Backend) -> None:
    old = await small.lease.acquire("a")
    assert old is not None
    assert await _publish_points(small, old, {"TCS": b"1 10"})
    await small.lease.release("a", old)
    new = await small.lease.acquire("b")
    assert new is not None
    assert not await _publish_points(small, old, {"TCS": b"2 99", "INFY": b"2 99"})
    assert await _publish_points(small, new, {"TCS": b"3 11"})
    assert await small.history.read("TCS") == [b"1 10", b"3 11"]
    assert await small.history.read("INFY") == []


async def test_history_of_a_symbol_nobody_updates_expires(small: Backend) -> None:
    token = await small.lease.acquire("a")
    assert token is not None
    assert await _publish_points(small, token, {"GONE": b"1 10", "KEPT": b"1 20"})
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    n = 1
    # KEPT gets a point now and then, as a fetched symbol does; GONE stopped being fetched.
    while await small.history.read("GONE"):
        assert loop.time() < deadline, "an idle symbol's history never expired"
        n += 1
        assert await _publish_points(small, token, {"KEPT": b"%d 20" % n})
        await asyncio.sleep(0.05)
    kept = await small.history.read("KEPT")
    assert kept and len(kept) <= HISTORY_POINTS and kept[-1] == b"%d 20" % n


async def test_history_sample_spreads_each_line_evenly_first_and_last_kept(
    backend: Backend,
) -> None:
    """The sparklines' read: every symbol in one call, at most `points` entries each, evenly
    spread by position (the same positions whichever the store), the ends always included."""
    token = await backend.lease.acquire("a")
    assert token is not None
    for n in range(10):
        history = {"TCS": b"%d 1.%d" % (n, n)}
        if n < 3:
            history["INFY"] = b"%d 2.%d" % (n, n)
        if n == 0:
            history["NIFTY 50"] = b"12:\x00 binary: \xe2\x82\xb9"  # opaque, length prefix or not
        assert await _publish_points(backend, token, history)
    sampled = await backend.history.sample(["TCS", "NOPE", "INFY", "NIFTY 50"], 4)
    assert sampled == [
        [b"0 1.0", b"3 1.3", b"6 1.6", b"9 1.9"],  # positions i * (10 - 1) // (4 - 1)
        [],
        [b"0 2.0", b"1 2.1", b"2 2.2"],  # fewer than asked: all of them
        [b"12:\x00 binary: \xe2\x82\xb9"],
    ]
    assert await backend.history.sample(["TCS"], 10) == [await backend.history.read("TCS")]
    assert await backend.history.sample([], 4) == []
    with pytest.raises(ValueError, match="at least 2 points"):
        await backend.history.sample(["TCS"], 1)
