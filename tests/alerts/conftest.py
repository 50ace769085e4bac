from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from app.alerts import Alerts, open_alerts
from app.alerts.model import Alert, build
from app.feeds.base import FetchResult
from app.models import LIVE, FeedStatus
from app.pubsub import open_backend
from app.pubsub.base import Backend, Message
from tests.feeds.scripted import quote


class Replica:
    """One replica's shared-state ports and alerts (its own Redis connections)."""

    def __init__(self, backend: Backend, alerts: Alerts) -> None:
        self.backend = backend
        self.alerts = alerts


@pytest.fixture(params=["memory", "redis", "redis-db1", "redis-cluster"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def replicas(kind: str, request: pytest.FixtureRequest) -> AsyncIterator[list[Replica]]:
    """Two replicas of one deployment (on the memory bus: one, as its cluster is one process)."""
    url = "memory://"
    if kind == "redis-cluster":
        url = request.getfixturevalue("redis_cluster_url")
    elif kind != "memory":
        url = request.getfixturevalue("redis_url")
        url = url.removesuffix("/0") + "/1" if kind == "redis-db1" else url
    async with AsyncExitStack() as stack:
        found = []
        for n in range(1 if kind == "memory" else 2):
            backend = await stack.enter_async_context(
                open_backend(
                    url,
                    registry_ttl=5,
                    client_name=f"t{n}",
                    lease_ttl=2.0,
                    cluster=kind == "redis-cluster",
                )  # fmt: skip
            )
            alerts = await stack.enter_async_context(
                open_alerts(
                    backend,
                    url,
                    client_name=f"t{n}",
                    session_secret="",
                    limit=3,
                    rearm_pct=0.5,
                )  # fmt: skip
            )
            found.append(Replica(backend, alerts))
        yield found


_made = itertools.count(1)


def alert(owner: str = "anon:a", symbol: str = "AAPL", value: str = "110", kind: str = "above",
          last: str = "100") -> Alert:  # fmt: skip
    """A new alert, set a millisecond after the one before (lists are oldest first)."""
    return build(owner=owner, symbol=symbol, kind=kind, value=value, note="n", last=Decimal(last),
                 now_ms=next(_made))  # fmt: skip


class PricedFeed:
    """A feed whose prices the test sets; `gate` (when set) holds each fetch until it opens."""

    name = "scripted"
    authoritative_symbols = True

    def __init__(self, prices: dict[str, str]) -> None:
        self.prices = dict(prices)
        self.gate: asyncio.Event | None = None
        self.fetching = asyncio.Event()

    def check_symbol(self, symbol: str) -> str | None:
        return None

    async def fetch(self, symbols: Sequence[str]) -> FetchResult:
        prices = dict(self.prices)  # the prices at the time of the request
        self.fetching.set()
        if self.gate is not None:
            await self.gate.wait()
        result = FetchResult()
        for s in symbols:
            if s in prices:
                result.quotes.append(replace(quote(s, self.name, prices[s]), currency="USD"))
        return result

    def status(self) -> FeedStatus:
        return LIVE

    def refresh_interval(self, symbols: int, poll_interval: float) -> float:
        return poll_interval

    def describe(self) -> dict[str, Any]:
        return {}


async def listening(backend: Backend, channel: str) -> tuple[list[Message], asyncio.Task[None]]:
    got: list[Message] = []
    ready = asyncio.Event()

    async def run() -> None:
        async for message in backend.bus.listen([channel], lambda up: ready.set()):
            got.append(message)

    task = asyncio.create_task(run())
    await asyncio.wait_for(ready.wait(), 5)
    return got, task
