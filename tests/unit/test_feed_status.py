"""Feed status and rejected symbols: from the fetcher, through the bus, to each watcher."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson
import pytest

from app.core.hub import Hub
from app.core.outbox import Outbox
from app.feeds.base import FetchResult
from app.fetcher import Fetcher
from app.formats import JSON_FORMAT, HtmlFormat
from app.models import LIVE, FeedStatus
from app.pubsub import open_backend
from app.pubsub.base import UPDATES_CHANNEL, Backend
from app.rendering import Renderer
from tests.feeds.scripted import quote


class Switchable:
    """A Feed whose status and answers the test sets."""

    name = "twelvedata"

    def __init__(self) -> None:
        self.current = LIVE
        self.rejects: dict[str, str] = {}
        self.asked: list[list[str]] = []

    def check_symbol(self, symbol: str) -> str | None:
        return None

    def status(self) -> FeedStatus:
        return self.current

    def refresh_interval(self, symbols: int, poll_interval: float) -> float:
        return max(poll_interval, symbols * 7.5)

    def describe(self) -> dict[str, Any]:
        return {}

    async def fetch(self, symbols: Sequence[str]) -> FetchResult:
        self.asked.append(list(symbols))
        if self.current.state != "live":
            return FetchResult()
        return FetchResult(
            quotes=[quote(s, self.name) for s in symbols if s not in self.rejects],
            rejected={s: r for s, r in self.rejects.items() if s in symbols},
        )


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    async with open_backend("memory://", registry_ttl=5, client_name="test") as b:
        yield b


async def messages(backend: Backend, fetcher: Fetcher) -> list[dict[str, Any]]:
    """Everything one tick publishes."""
    seen: list[dict[str, Any]] = []
    ready, done = asyncio.Event(), asyncio.Event()

    async def listen() -> None:
        async for m in backend.bus.listen([UPDATES_CHANNEL], lambda up: ready.set()):
            seen.append(orjson.loads(m.data))
            if "end" in seen[-1]:
                done.set()

    task = asyncio.create_task(listen())
    await asyncio.wait_for(ready.wait(), 5)
    await fetcher.tick()
    await backend.bus.publish(UPDATES_CHANNEL, b'{"epoch":0,"quotes":[],"end":1}')
    await asyncio.wait_for(done.wait(), 5)
    task.cancel()
    return seen[:-1]


async def test_status_rides_the_bus_and_is_repeated_while_not_live(backend: Backend) -> None:
    feed = Switchable()
    fetcher = Fetcher(feed, backend, interval=2.0, board=["AAPL", "MSFT"])
    [first] = await messages(backend, fetcher)
    assert first["status"]["state"] == "live" and len(first["quotes"]) == 2
    assert fetcher.refresh == 15.0  # two symbols at 7.5 s each
    feed.current = FeedStatus("stale", "rate_limited", "twelvedata", 1, 30.0, "minute")
    for _ in range(2):
        [message] = await messages(backend, fetcher)
        assert message["quotes"] == [] and message["status"]["reason"] == "rate_limited"
    feed.current = LIVE
    [back] = await messages(backend, fetcher)
    assert back["status"]["state"] == "live"


async def test_rejected_symbols_are_announced_and_not_asked_again(backend: Backend) -> None:
    feed = Switchable()
    feed.rejects = {"NOPE": "**symbol** not found"}
    fetcher = Fetcher(feed, backend, interval=2.0, board=["AAPL", "NOPE"])
    [message] = await messages(backend, fetcher)
    assert message["rejected"] == [
        {"symbol": "NOPE", "reason": "**symbol** not found", "source": "twelvedata",
         "retry_after": 900}
    ]  # fmt: skip
    await messages(backend, fetcher)
    assert feed.asked == [["AAPL", "NOPE"], ["AAPL"]]


async def test_the_hub_forwards_status_changes_and_rejections(backend: Backend) -> None:
    hub = Hub(backend, "r1", lease_refresh=1.0, poll_linger=1.0)
    hub.bus_connected = True
    hub.health.listening()  # as a connected listener does: not deaf
    client, page = Outbox(JSON_FORMAT), Outbox(HtmlFormat(Renderer()))
    for outbox in (client, page):
        hub.attach(outbox)
        hub.subscriptions.watch(outbox, ["AAPL", "NOPE"])
    stale = FeedStatus("stale", "provider_down", "finnhub", 1700000000000, None, "HTTP 502")
    update = {
        "epoch": 1,
        "quotes": [],
        "status": stale.to_dict(),
        "rejected": [
            {"symbol": "NOPE", "reason": "not found", "source": "twelvedata", "retry_after": 60}
        ],
    }
    hub.dispatch(orjson.dumps(update))
    hub.dispatch(orjson.dumps(update))  # the same status again: not repeated
    frames = [orjson.loads(f) for f in client.drain()]
    assert frames == [
        {"type": "rejected", "symbol": "NOPE", "code": "unknown_symbol", "reason": "not found",
         "source": "twelvedata"},
        {"type": "status", "state": "stale", "reason": "provider_down", "source": "finnhub",
         "since": 1700000000000, "retry_after": None, "detail": "HTTP 502"},
    ]  # fmt: skip
    assert client.symbols == {"AAPL"} and hub.current_status().state == "stale"
    assert hub.acceptance.refused("NOPE") == "not found" and hub.acceptance.refused("AAPL") is None
    rejected, html = (message.decode() for message in page.drain())
    # The page's row of the symbol, swapped out of band into its rejected state.
    assert 'id="q-NOPE" hx-swap-oob="true" class="quote rejected"' in rejected
    assert "Unknown symbol" in rejected and "not priced by twelvedata" in rejected
    assert page.symbols == {"AAPL"}
    assert 'id="feed-status"' in html and "Stale" in html and "provider_down" in html
    hub.bus_connected = False
    assert hub.current_status().reason == "bus_disconnected"
