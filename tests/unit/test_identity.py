"""Two processes given the same REPLICA_ID: one fetcher between them, and both say so loudly."""

from __future__ import annotations

import asyncio
import logging

import orjson
import pytest

from app.core.hub import Hub
from app.feeds.simulated import SimulatedFeed
from app.fetcher import Fetcher
from app.identity import FORGET_AFTER, WARN_EVERY, TwinWatch, lease_holder
from app.pubsub import open_backend
from tests.feeds.scripted import Clock
from tests.support import RedisServer, eventually


def test_our_heartbeat_is_ours_and_a_twins_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock(0.0)
    ours, twin = TwinWatch("web-1", clock=clock), TwinWatch("web-1", clock=clock)
    assert ours.nonce != twin.nonce
    beat = orjson.loads(ours.heartbeat())
    assert beat == {"type": "heartbeat", "replica": "web-1", "process": ours.nonce}
    with caplog.at_level(logging.WARNING, logger="app.identity"):
        assert ours.is_own(beat)
        assert not caplog.records
        for _ in range(int(WARN_EVERY) - 1):  # a twin beating every second...
            assert not ours.is_own(orjson.loads(twin.heartbeat()))
            clock.advance(1)
        assert len(caplog.records) == 1  # ...is reported once, not once a beat
        [record] = caplog.records
        assert record.levelno == logging.WARNING and "REPLICA_ID CLASH" in record.message
        assert twin.nonce in record.message and ours.nonce in record.message
        clock.advance(1)
        assert not ours.is_own(orjson.loads(twin.heartbeat()))
        assert len(caplog.records) == 2  # and again while it keeps beating
    assert set(ours.clashes()) == {twin.nonce}
    clock.advance(FORGET_AFTER + 1)
    assert ours.clashes() == {}
    # A heartbeat without a nonce (an older version) with our id is not ours either.
    assert not ours.is_own({"type": "heartbeat", "replica": "web-1"})


def test_the_lease_holder_names_the_process() -> None:
    assert lease_holder("web-1", "3f9c0a12b7e4") == "web-1:3f9c0a12b7e4"


async def test_hubs_sharing_a_replica_id_tell_their_heartbeats_apart(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with open_backend("memory://", registry_ttl=5, client_name="t") as backend:
        hubs = [Hub(backend, "web-1", lease_refresh=1.0, poll_linger=1.0, heartbeat=0.05)
                for _ in range(2)]  # fmt: skip
        tasks = [asyncio.create_task(hub.run()) for hub in hubs]
        a, b = (hub.health for hub in hubs)

        async def clash_seen() -> bool:
            return b.twins.nonce in a.twins.clashes() and a.twins.nonce in b.twins.clashes()

        await eventually(clash_seen, 5, "each hub to hear the other's heartbeat")
        assert a.hearing_itself and b.hearing_itself and a.peers == b.peers == {}
        assert sum("REPLICA_ID CLASH" in r.message for r in caplog.records) == 2
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_two_fetchers_with_one_replica_id_on_redis_only_one_fetches(
    redis_url: str, redis_server: RedisServer
) -> None:
    async with (
        open_backend(redis_url, registry_ttl=1.0, client_name="a") as first,
        open_backend(redis_url, registry_ttl=1.0, client_name="b") as second,
    ):
        fetchers = [
            Fetcher(SimulatedFeed(seed=1), backend, interval=1.0, board=["TCS"], replica_id="web-1")
            for backend in (first, second)
        ]
        for _ in range(3):
            for fetcher in fetchers:
                await fetcher.tick()
        assert sorted(p.role for p in fetchers) == ["follower", "leader"]
        leader, follower = sorted(fetchers, key=lambda p: p.role != "leader")
        assert leader.feed_calls == 3 and follower.feed_calls == 0
        holder = redis_server.cli("HGET", "fetcher:lease", "holder").strip()
        assert holder == leader.holder != follower.holder
        # The other one is a real standby: it takes over when the lease is handed on.
        await leader.release()
        await follower.tick()
        assert follower.role == "leader" and follower.feed_calls == 1
