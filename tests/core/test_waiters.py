"""Waits (long-polls, page renders) are a registry of their own, not connections."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import cast

import pytest
from prometheus_client.core import Metric

from app.core.hub import Hub
from app.core.outbox import Outbox
from app.core.waiters import Waiters
from app.formats import JSON_FORMAT
from app.metrics import AppCollector
from app.pubsub import open_backend
from app.services import Services
from tests.support import eventually


def test_a_waiter_is_rung_by_news_of_its_symbols_only() -> None:
    waiters = Waiters()
    tcs = waiters.add(["TCS"], "a")
    both = waiters.add(["TCS", "INFY"], "b")
    assert waiters.counts() == {"TCS": 2, "INFY": 1} and len(waiters) == 2
    waiters.ring(["INFY"])
    assert both._rung.is_set() and not tcs._rung.is_set()
    assert set(waiters.reject("TCS")) == {tcs, both} and tcs._rung.is_set()
    assert waiters.counts() == {"INFY": 1} and both.symbols == {"INFY"}
    waiters.remove(tcs)
    waiters.remove(both)
    assert waiters.counts() == {} and len(waiters) == 0


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    async with open_backend("memory://", registry_ttl=5, client_name="test") as backend:
        yield Hub(backend, "r1", lease_refresh=1.0, poll_linger=1.0)


def _connections(hub: Hub) -> dict[str, float]:
    collector = AppCollector(cast(Services, SimpleNamespace(hub=hub)))
    metric: Metric = next(iter(collector._connections()))
    return {s.labels["transport"]: s.value for s in metric.samples}


async def test_page_renders_and_long_polls_are_not_websocket_connections(hub: Hub) -> None:
    socket = Outbox(JSON_FORMAT)
    hub.attach(socket)
    hub.subscriptions.watch(socket, ["TCS"])
    # Two waits in flight (a page render and a long-poll), the long-poll counted as one.
    hub.polls_in_flight += 1
    waits = [
        asyncio.create_task(hub.await_quotes(["TCS"], lambda qs: False, 5, "page")),
        asyncio.create_task(hub.await_quotes(["INFY"], lambda qs: False, 5, "poll")),
    ]
    await eventually(lambda: _true(len(hub.subscriptions.waiters) == 2), 5, "both waiting")
    assert _connections(hub) == {"websocket": 1.0, "longpoll": 1.0}
    assert hub.subscriptions.local_counts() == {"TCS": 2, "INFY": 1}
    hub.start_drain(0.1)  # a drain wakes every wait, which then returns
    assert [quotes for quotes, _ in await asyncio.gather(*waits)] == [[], []]
    assert len(hub.subscriptions.waiters) == 0


async def _true(condition: bool) -> bool | None:
    return True if condition else None
