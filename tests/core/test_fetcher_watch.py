"""Readiness's "no live fetcher": silence alone never fails it, a fetcher that stopped ticking does.

Pure tests drive `FetcherWatch` with a clock of their own; the in-process test runs a real hub
and a real fetch loop on the in-memory bus, in a market where no price ever changes.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from app.core.fetcher_watch import STALL_FLOOR, Announcement, FetcherWatch
from app.core.hub import Hub
from app.core.outbox import Outbox
from app.feeds.simulated import SimulatedFeed
from app.fetcher import Fetcher
from app.formats import JSON_FORMAT
from app.pubsub import open_backend
from tests.support import eventually

HOLDER = {"holder": "web-1:abc", "term": 5}


class Clock:
    """The real monotonic clock, plus however far a test moved it on."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class Frozen(SimulatedFeed):
    """A quiet market: prices never move, so after the first quote nothing is published."""

    def _step(self, walk: object) -> None:
        return None


def test_a_quiet_market_with_a_ticking_fetcher_never_stalls() -> None:
    clock = Clock()
    watch = FetcherWatch(2.0, clock=clock)
    watch.update_heard()
    for _ in range(3600):  # an hour of heartbeats, each a second apart, and not one quote
        clock.advance(1.0)
        watch.heard({**HOLDER, "tick_age": 0.4})
        assert watch.stalled(watched=5) is None
    assert watch.describe()["last_update_age"] >= 3600
    assert watch.describe()["holder"] == "web-1:abc"


def test_no_quote_and_no_fetcher_stalls_after_the_window_only_with_watchers() -> None:
    clock = Clock()
    watch = FetcherWatch(0.2, clock=clock)
    assert watch.stall_after == STALL_FLOOR  # five intervals of 0.2 s are too short to judge
    assert FetcherWatch(4.0).stall_after == 20.0  # five intervals
    clock.advance(STALL_FLOOR - 0.5)
    assert watch.stalled(watched=1) is None
    clock.advance(1.0)
    stall = watch.stalled(watched=2)
    assert stall is not None and stall.watched == 2
    assert stall.quiet_for >= STALL_FLOOR and stall.silent_for >= STALL_FLOOR
    assert watch.stalled(watched=0) is None  # nobody here is missing anything
    watch.listening()  # a listener that just (re)subscribed could not have heard anything yet
    assert watch.stalled(watched=2) is None


def test_updates_without_announcements_do_not_stall() -> None:
    # e.g. a fetcher of an older release, during a rolling deploy: quotes flow, nothing announced
    clock = Clock()
    watch = FetcherWatch(2.0, clock=clock)
    for _ in range(60):
        clock.advance(2.0)
        watch.update_heard()
        assert watch.stalled(watched=3) is None


def test_a_fetcher_whose_loop_stopped_ticking_stalls_though_it_still_announces() -> None:
    # The lease keeper renews the lease and the heartbeat still names the fetcher, but its tick
    # only gets older: that is not a live fetcher.
    clock = Clock()
    watch = FetcherWatch(2.0, clock=clock)
    age = 0.0
    while watch.stalled(watched=1) is None:
        assert age < 30, "a wedged fetcher never counted as dead"
        clock.advance(1.0)
        age += 1.0
        watch.heard({**HOLDER, "tick_age": age})
    assert age >= STALL_FLOOR


def test_malformed_announcements_are_ignored() -> None:
    watch = FetcherWatch(2.0)
    bad: object
    for bad in (None, "x", [], {"holder": 1, "term": 1, "tick_age": 0},
                {"holder": "a", "term": True, "tick_age": 0},
                {"holder": "a", "term": 1, "tick_age": float("nan")},
                {"holder": "", "term": 1, "tick_age": 0},
                {"holder": "a" * 300, "term": 1, "tick_age": 0}):  # fmt: skip
        watch.heard(bad)
    assert watch.ticked_at is None and watch.last is None
    watch.heard({"holder": "a", "term": 1, "tick_age": -3})  # a clock hiccup: counts as now
    assert watch.last == Announcement("a", 1, 0.0)


async def test_a_follower_in_a_quiet_market_stays_ready_and_notices_the_fetcher_stop() -> None:
    clock = Clock()
    async with open_backend("memory://", registry_ttl=5, client_name="t") as backend:
        fetcher = Fetcher(Frozen(seed=1), backend, interval=0.05, board=["TCS"], replica_id="r1")
        watch = FetcherWatch(0.05, clock=clock)
        hub = Hub(
            backend, "r1", lease_refresh=1.0, poll_linger=1.0, heartbeat=0.05,
            fetchers=watch, announce=fetcher.announcement,
        )  # fmt: skip
        hub_task = asyncio.create_task(hub.run())
        await eventually(lambda: _true(hub.bus_connected), 5, "the hub listening")
        fetch_task = asyncio.create_task(fetcher.run())
        try:
            outbox = Outbox(JSON_FORMAT)
            hub.attach(outbox)
            hub.subscriptions.watch(outbox, ["TCS"])
            await eventually(lambda: _true(watch.updated_at is not None), 5, "the first quote")

            # An hour passes with no price change; the fetcher keeps ticking and announcing.
            clock.advance(3600)
            jumped = clock()
            await eventually(lambda: _true((watch.ticked_at or 0) > jumped - 1), 5, "a tick")
            assert clock() - (watch.updated_at or 0) >= 3600  # not one update in that hour
            assert watch.stalled(len(hub.subscriptions.reported_counts())) is None

            # The fetch loop stops; the lease stays held and the heartbeat still names the
            # fetcher, with an ever older tick.
            fetch_task.cancel()
            await asyncio.gather(fetch_task, return_exceptions=True)
            assert fetcher.announcement() is not None
            await heartbeats(hub, 0.0)
            stopped = watch.ticked_at
            await heartbeats(hub, 1.0)  # a second more of them, each naming the same old tick
            # (only delivery jitter can move it; a live fetcher's would have moved by a second)
            assert watch.ticked_at == pytest.approx(stopped, abs=0.5)
            clock.advance(STALL_FLOOR + 1)
            stall = watch.stalled(len(hub.subscriptions.reported_counts()))
            assert stall is not None and stall.watched == 1
        finally:
            for task in (hub_task, fetch_task):
                task.cancel()
            await asyncio.gather(hub_task, fetch_task, return_exceptions=True)


async def _true(value: bool) -> bool:
    return value


async def heartbeats(hub: Hub, seconds: float) -> None:
    """Until our own heartbeats have come back for `seconds` more (at least one)."""
    since = time.monotonic() + seconds
    await eventually(lambda: _true((hub.health.last_heartbeat or 0) > since), 5, "heartbeats")
