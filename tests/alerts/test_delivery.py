"""Each replica's alert listener, against in-process fakes of the Bus port: a deaf subscriber
connection is noticed and replaced, and what fired meanwhile is delivered from the inbox."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from decimal import Decimal

import orjson
import pytest

from app.alerts.delivery import RECENT_SECONDS, AlertDelivery, parse_fired
from app.alerts.memory_store import MemoryAlertStore
from app.alerts.store import ALERTS_CHANNEL, Change
from app.core.outbox import Outbox
from app.formats import JSON_FORMAT
from app.pubsub import open_backend
from app.pubsub.base import CONTROL_CHANNEL, Backend, Message, StateCallback
from tests.alerts.conftest import alert
from tests.support import eventually


class DeafThenWorkingBus:
    """The first subscription connects and then hears nothing, ever (a subscriber connection
    that died without an error); later ones hear heartbeats and whatever is put in `live`."""

    def __init__(self) -> None:
        self.listens = 0
        self.live: asyncio.Queue[Message] = asyncio.Queue()

    async def publish(self, channel: str, data: bytes) -> None:
        await self.live.put(Message(channel, data))

    async def listen(
        self, channels: Sequence[str], on_state: StateCallback | None = None
    ) -> AsyncGenerator[Message, None]:
        self.listens += 1
        deaf = self.listens == 1
        if on_state is not None:
            on_state(True)
        while True:
            if deaf:
                await asyncio.Event().wait()
            try:
                yield await asyncio.wait_for(self.live.get(), 0.1)
            except TimeoutError:
                yield Message(CONTROL_CHANNEL, b'{"type":"heartbeat"}')

    async def ping(self) -> bool:
        return True


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    async with open_backend("memory://", registry_ttl=5, client_name="t") as b:
        yield b


async def test_a_deaf_listener_is_rebuilt_and_the_inbox_read_again(backend: Backend) -> None:
    store = MemoryAlertStore(backend.lease, backend.bus)
    bus = DeafThenWorkingBus()
    delivery = AlertDelivery(store, bus)
    outbox = Outbox(JSON_FORMAT)
    await delivery.welcome("anon:a", outbox)
    runner = asyncio.create_task(delivery.run(deaf_after=0.5))

    async def connected() -> bool:
        return delivery.resyncs == 1

    await eventually(connected, 5, "the listener's first connect")
    # It fires while this replica's listener is deaf: the message is lost, the inbox keeps it.
    a = alert()
    await store.add(a, 3)
    [(read, stored)] = await store.for_symbols(["AAPL"])
    token = await backend.lease.acquire("fetcher")
    assert token is not None
    new = read.step(Decimal("111"), Decimal("0.5"), 1)
    assert new is not None
    suffix = b',"owner":"anon:a","id":"%s","symbol":"AAPL"}' % a.id.encode()
    change = Change(stored, new, Decimal("0.5"), (b'{"type":"alert","seq":', suffix))
    applied = await store.apply(token, [change])
    assert applied is not None
    [message] = applied.fired

    async def shown() -> bool:
        return outbox.owes()

    await eventually(shown, 10, "the alert, after the rebuild")
    assert delivery.rebuilds == 1 and bus.listens == 2 and delivery.resyncs == 2
    [sent] = outbox.drain()
    assert orjson.loads(sent)["id"] == a.id and "owner" not in orjson.loads(sent)
    assert await store.inbox("anon:a") == []  # shown: marked seen
    # And the rebuilt listener delivers live ones.
    await bus.publish(ALERTS_CHANNEL, message.replace(b'"seq":1', b'"seq":2'))
    await eventually(shown, 5, "a live alert")
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)


class CountingStore(MemoryAlertStore):
    """The memory store, counting inbox reads (each one a Redis round trip in production)."""

    reads = 0

    async def inbox(self, owner: str) -> list[bytes]:
        self.reads += 1
        return await super().inbox(owner)


async def test_a_poll_with_a_cursor_reads_no_inbox_once_the_listener_is_settled(
    backend: Backend,
) -> None:
    store = CountingStore(backend.lease, backend.bus)
    delivery = AlertDelivery(store, backend.bus)
    heard = parse_fired(b'{"type":"alert","seq":7,"owner":"anon:a","id":"x"}', time.monotonic())
    delivery.dispatch(heard)
    delivery.connected = True
    await delivery.for_poll("anon:a", None)  # a page's first poll: what no tab showed yet
    assert store.reads == 1
    await delivery.for_poll("anon:a", 3)  # never resynced: it may have missed some
    assert store.reads == 2
    delivery._resynced_at = time.monotonic() - RECENT_SECONDS - 1  # settled long ago
    assert [f.seq for f in await delivery.for_poll("anon:a", 3)] == [7]
    assert await delivery.for_poll("anon:a", 7) == [] and store.reads == 2
    delivery._resynced_at = time.monotonic()  # just reconnected: the inbox too
    await delivery.for_poll("anon:a", 7)
    assert store.reads == 3


async def test_a_poll_registered_before_it_looks_is_woken_by_what_fires_meanwhile(
    backend: Backend,
) -> None:
    delivery = AlertDelivery(MemoryAlertStore(backend.lease, backend.bus), backend.bus)
    event = delivery.watch("anon:a")
    delivery.dispatch(parse_fired(b'{"type":"alert","seq":1,"owner":"anon:a"}'))
    waited = await delivery.race("anon:a", asyncio.sleep(30, "slept"), event)
    assert waited is None and event.is_set()
    delivery.unwatch("anon:a", event)
    assert await delivery.race("anon:a", asyncio.sleep(0, "slept")) == "slept"
