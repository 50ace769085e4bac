"""The hub on the in-memory backend: fan-out, encode-once, ordering, registry reports."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest

from app.core.hub import Hub
from app.core.outbox import Outbox
from app.formats import JSON_FORMAT, JsonFormat
from app.models import Quote, encode_quote, encode_update
from app.pubsub import open_backend
from app.pubsub.base import SUBSCRIPTIONS_CHANNEL, UPDATES_CHANNEL, Backend
from app.pubsub.memory import MemoryBus
from tests.support import eventually
from tests.unit.test_models import make_quote


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    async with open_backend("memory://", registry_ttl=5, client_name="test") as b:
        yield b


@pytest.fixture
async def hub(backend: Backend) -> AsyncIterator[Hub]:
    hub = Hub(backend, "r1", lease_refresh=1.0, poll_linger=1.0)
    task = asyncio.create_task(hub.run())
    await eventually(lambda: _true(hub.bus_connected), 5, "hub listening")
    yield hub
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _true(value: bool) -> bool:
    return value


async def publish(backend: Backend, *quotes: Quote) -> None:
    await backend.bus.publish(UPDATES_CHANNEL, encode_update(1, [encode_quote(q) for q in quotes]))


class CountingFormat(JsonFormat):
    def __init__(self) -> None:
        self.calls = 0

    def encode(self, quote: Quote) -> bytes:
        self.calls += 1
        return super().encode(quote)


async def test_each_quote_is_encoded_once_for_all_watchers(hub: Hub, backend: Backend) -> None:
    counter = CountingFormat()
    fmt = counter
    boxes = [Outbox(fmt) for _ in range(100)]
    for box in boxes:
        hub.attach(box)
        hub.subscriptions.watch(box, ["TCS"])
    await publish(backend, make_quote(seq=1))
    await eventually(lambda: _true(all(box._pending for box in boxes)), 5, "fan-out")
    assert counter.calls == 1
    texts = {box.drain()[0] for box in boxes}
    assert len(texts) == 1


async def test_only_watchers_of_a_symbol_get_it(hub: Hub, backend: Backend) -> None:
    tcs, infy = Outbox(JSON_FORMAT), Outbox(JSON_FORMAT)
    for box, symbol in ((tcs, "TCS"), (infy, "INFY")):
        hub.attach(box)
        hub.subscriptions.watch(box, [symbol])
    await publish(backend, make_quote(symbol="TCS", seq=1))
    await eventually(lambda: _true(bool(tcs._pending)), 5, "delivery")
    assert infy.drain() == []


async def test_old_and_duplicate_quotes_are_dropped(hub: Hub, backend: Backend) -> None:
    box = Outbox(JSON_FORMAT)
    hub.attach(box)
    hub.subscriptions.watch(box, ["TCS"])
    await publish(backend, make_quote(seq=5))
    await eventually(lambda: _true(bool(box._pending)), 5, "delivery")
    box.drain()
    await publish(backend, make_quote(seq=4), make_quote(seq=5), make_quote(epoch=9, seq=50))
    await publish(backend, make_quote(seq=6))
    await eventually(lambda: _true(bool(box._pending)), 5, "delivery")
    [frame] = box.drain()
    assert orjson.loads(frame)["quote"]["seq"] == 6
    newest = hub.latest.get("TCS")
    assert newest is not None and newest.seq == 6


async def test_malformed_bus_messages_are_ignored(hub: Hub, backend: Backend) -> None:
    box = Outbox(JSON_FORMAT)
    hub.attach(box)
    hub.subscriptions.watch(box, ["TCS"])
    for junk in (b"garbage", b"{}", b'{"quotes": [{"symbol": "TCS"}]}', b'{"quotes": 5}'):
        await backend.bus.publish(UPDATES_CHANNEL, junk)
    await publish(backend, make_quote(seq=1))
    await eventually(lambda: _true(bool(box._pending)), 5, "the good message after the junk")


async def test_counts_are_reported_and_new_symbols_announced(hub: Hub, backend: Backend) -> None:
    listening = asyncio.Event()
    events = backend.bus.listen([SUBSCRIPTIONS_CHANNEL], lambda up: listening.set())
    first = asyncio.ensure_future(anext(events))
    await asyncio.wait_for(listening.wait(), 5)
    a, b = Outbox(JSON_FORMAT), Outbox(JSON_FORMAT)
    for box in (a, b):
        hub.attach(box)
        hub.subscriptions.watch(box, ["TCS", "INFY"])
    message = await asyncio.wait_for(first, 5)
    assert orjson.loads(message.data)["added"] == ["INFY", "TCS"]
    assert await eventually(lambda: _match(backend, {"TCS": 2, "INFY": 2}), 5, "registry totals")
    hub.detach(a)
    hub.subscriptions.unwatch(b, ["INFY"])
    assert await eventually(lambda: _match(backend, {"TCS": 1}), 5, "registry after leaving")
    await events.aclose()


async def _match(backend: Backend, expected: dict[str, int]) -> bool:
    return await backend.registry.reconcile() == expected


async def test_concurrent_snapshots_share_one_store_read(backend: Backend) -> None:
    await backend.snapshots.put({"INFY": encode_quote(make_quote(symbol="INFY", seq=3))})
    reads: list[list[str]] = []
    real_get = backend.snapshots.get

    async def counting_get(symbols: list[str]) -> dict[str, bytes]:
        reads.append(list(symbols))
        await asyncio.sleep(0)
        return await real_get(symbols)

    object.__setattr__(backend, "snapshots", _Wrapped(backend.snapshots, counting_get))
    hub = Hub(backend, "r1", lease_refresh=1.0, poll_linger=1.0)
    results = await asyncio.gather(*(hub.snapshot(["INFY"]) for _ in range(50)))
    assert all(r and r[0].seq == 3 for r in results)
    assert reads == [["INFY"]]


class _Wrapped:
    def __init__(self, inner: object, get: object) -> None:
        self._inner, self.get = inner, get

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


async def test_snapshot_reads_the_shared_store(hub: Hub, backend: Backend) -> None:
    stored = make_quote(symbol="INFY", seq=7)
    await backend.snapshots.put({"INFY": encode_quote(stored)})
    assert await hub.snapshot(["INFY", "NOPE"]) == [stored]


async def test_bus_state_changes_reach_clients_as_status(hub: Hub) -> None:
    box = Outbox(JSON_FORMAT)
    hub.attach(box)
    hub._on_bus_state(False)
    hub._on_bus_state(True)
    states = [orjson.loads(f)["state"] for f in box.drain()]
    assert states == ["delayed", "live"]


async def test_a_silently_deaf_listener_is_noticed_and_rebuilt(backend: Backend) -> None:
    hub = Hub(backend, "r1", lease_refresh=1.0, poll_linger=1.0, heartbeat=0.05)
    task = asyncio.create_task(hub.run())
    await eventually(lambda: _true(hub.health.hearing_itself), 5, "the hub hearing its heartbeat")
    # Detach the listener's queue without any error: the connection "looks open" but is deaf.
    bus = backend.bus
    assert isinstance(bus, MemoryBus)
    for queues in bus._listeners.values():
        queues.clear()
    await eventually(lambda: _true(not hub.health.hearing_itself), 5, "deafness noticed")
    await eventually(lambda: _true(hub.health.rebuilds >= 1), 5, "listener rebuilt")
    await eventually(lambda: _true(hub.health.hearing_itself), 5, "hearing again")
    for queues in bus._listeners.values():  # deaf again: noticed again
        queues.clear()
    await eventually(lambda: _true(hub.health.rebuilds >= 2), 5, "a second rebuild")
    await eventually(lambda: _true(hub.health.hearing_itself), 5, "hearing once more")
    box = Outbox(JSON_FORMAT)
    hub.attach(box)
    hub.subscriptions.watch(box, ["TCS"])
    await publish(backend, make_quote(seq=1))
    await eventually(lambda: _true(bool(box._pending)), 5, "delivery after the rebuild")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_await_quotes_returns_when_ready_or_when_time_runs_out(
    hub: Hub, backend: Backend
) -> None:
    quotes, timed_out = await hub.await_quotes(["TCS"], lambda qs: bool(qs), 0.05)
    assert (quotes, timed_out) == ([], True)
    assert len(hub.subscriptions.waiters) == 0  # the wait leaves nothing behind
    waiter = asyncio.create_task(hub.await_quotes(["TCS"], lambda qs: bool(qs), 5))
    await eventually(lambda: _true(len(hub.subscriptions.waiters) == 1), 5, "the wait")
    # A wait is a subscription (the fetcher prices what it waits for), not a connection.
    assert hub.connections == 0 and hub.subscriptions.local_counts() == {"TCS": 1}
    await publish(backend, make_quote(seq=3))
    quotes, timed_out = await asyncio.wait_for(waiter, 5)
    assert [q.seq for q in quotes] == [3] and not timed_out


async def test_a_quote_first_read_from_the_store_reaches_the_watchers_already_there(
    hub: Hub, backend: Backend
) -> None:
    # B waits for TCS; the fetcher's quote lands in the store, and A's subscribe reads it from
    # there before this replica's listener sees the bus copy, which is then no longer news.
    waiting = Outbox(JSON_FORMAT)
    hub.attach(waiting)
    hub.subscriptions.watch(waiting, ["TCS"])
    await backend.snapshots.put({"TCS": encode_quote(make_quote(seq=1))})
    assert [q.seq for q in await hub.snapshot(["TCS"])] == [1]
    [frame] = waiting.drain()
    assert orjson.loads(frame)["quote"]["seq"] == 1


async def test_never_priced_symbols_are_reported_only_once_admitted(backend: Backend) -> None:
    from app.core.admission import Admission

    clock = [100.0]
    admission = Admission(6, 2, clock=lambda: clock[0])
    clock[0] += 60  # a full budget
    hub = Hub(backend, "r1", lease_refresh=1.0, poll_linger=1.0, admission=admission)
    junk, honest = Outbox(JSON_FORMAT), Outbox(JSON_FORMAT)
    junk.client, honest.client = "10.0.0.1", "10.0.0.2"
    for box in (junk, honest):
        hub.attach(box)
    hub.subscriptions.watch(junk, [f"{i:04d}" for i in range(200)])
    hub.subscriptions.watch(honest, ["ORCL"])
    assert hub.subscriptions.reported_counts() == {
        "0000": 1,
        "0001": 1,
        "ORCL": 1,
    }  # 2 waiting at most per client
    hub.dispatch(encode_update(1, [encode_quote(make_quote(symbol="0000", seq=1))]))
    counts = hub.subscriptions.reported_counts()
    assert "0000" in counts  # priced now: always reported, no room needed
    assert set(counts) == {"0000", "0001", "0002", "ORCL"}  # room for the next of its junk
    hub.detach(junk)
    assert set(hub.subscriptions.reported_counts()) == {"ORCL"}
