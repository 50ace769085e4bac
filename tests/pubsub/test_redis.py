"""Redis specifics: the keys are readable with redis-cli, errors are BusUnavailable, the
listener heals itself, and the chart's history is a plain capped list an operator can read."""

from __future__ import annotations

import asyncio
import time

import pytest

from app.pubsub import open_backend
from app.pubsub.base import BusUnavailable, QuotaUsage, quota_windows
from tests.pubsub.test_contract import Listener
from tests.support import RedisServer, eventually


async def test_reconcile_maintains_the_seed_keys(redis_url: str, redis_server: RedisServer) -> None:
    async with open_backend(redis_url, registry_ttl=1.0, client_name="t") as backend:
        await backend.registry.report("a", {"TCS": 2, "NIFTY 50": 1})
        await backend.registry.report("b", {"TCS": 1})
        await backend.registry.reconcile()
        assert set(redis_server.cli("SMEMBERS", "subscriptions:active").split("\n")) >= {
            "TCS",
            "NIFTY 50",
        }
        assert redis_server.cli("GET", "subscriptions:count:TCS").strip() == "3"
        assert redis_server.cli("GET", "subscriptions:count:NIFTY 50").strip() == "1"
        await backend.registry.withdraw("a")
        await backend.registry.reconcile()
        assert redis_server.cli("SMEMBERS", "subscriptions:active").split() == ["TCS"]
        assert redis_server.cli("EXISTS", "subscriptions:count:NIFTY 50").strip() == "0"
        assert redis_server.cli("GET", "subscriptions:count:TCS").strip() == "1"


async def test_listener_reconnects_and_resubscribes_after_a_restart(
    redis_url: str, redis_server: RedisServer
) -> None:
    states: list[bool] = []
    async with open_backend(redis_url, registry_ttl=1.0, client_name="t") as backend:
        listener = Listener(backend, ["market-data:updates"])
        async with listener:
            original = listener._task
            # Record the state changes the listener reports.
            states_task = asyncio.create_task(_watch(backend, states))
            await eventually(lambda: _has(states, [True]), 10, "second listener subscribed")
            redis_server.stop()
            assert not await backend.bus.ping()
            redis_server.start()

            async def delivered() -> bool:
                await backend.bus.publish("market-data:updates", b"after")
                try:
                    return (await asyncio.wait_for(listener.messages.get(), 0.2)).data == b"after"
                except TimeoutError:
                    return False

            async def ready() -> bool | None:
                try:
                    return await delivered()
                except Exception:  # publish fails while the server starts
                    return None

            assert await eventually(ready, 20, "the listener to hear messages again")
            assert not original.done()
            await eventually(lambda: _has(states, [False, True]), 10, "state callbacks")
            states_task.cancel()


async def _has(states: list[bool], expected: list[bool]) -> bool:
    return states[-len(expected) :] == expected


async def _watch(backend: object, states: list[bool]) -> None:
    from app.pubsub import Backend

    assert isinstance(backend, Backend)
    async for _ in backend.bus.listen(["market-data:nothing"], states.append):
        pass


async def test_quota_keys_are_readable_and_expire_after_their_window(
    redis_url: str, redis_server: RedisServer
) -> None:
    now = time.time()
    minute, day = quota_windows(now)
    async with open_backend(redis_url, registry_ttl=1.0, client_name="t") as backend:
        await backend.quotas.take("twelvedata", now, 3, 8, 800)
        await backend.quotas.merge("twelvedata", now, QuotaUsage(paused_until=now + 30))
    assert redis_server.cli("GET", f"quota:twelvedata:minute:{minute}").strip() == "3"
    assert redis_server.cli("GET", f"quota:twelvedata:day:{day}").strip() == "3"
    paused = int(redis_server.cli("GET", "quota:twelvedata:paused"))
    assert paused == pytest.approx((now + 30) * 1000, abs=1)
    # Each key goes away by itself: a count a minute after its window, a stop when it lifts.
    minute_ttl = int(redis_server.cli("PTTL", f"quota:twelvedata:minute:{minute}"))
    assert 60_000 < minute_ttl <= 120_000
    day_ttl = int(redis_server.cli("PTTL", f"quota:twelvedata:day:{day}"))
    assert 60_000 < day_ttl <= 86_460_000
    assert 29_000 < int(redis_server.cli("PTTL", "quota:twelvedata:paused")) <= 30_000


async def test_quota_ledger_errors_are_bus_unavailable(
    redis_url: str, redis_server: RedisServer
) -> None:
    async with open_backend(redis_url, registry_ttl=1.0, client_name="t") as backend:
        redis_server.stop()
        ledger, now = backend.quotas, time.time()
        with pytest.raises(BusUnavailable):
            await ledger.read("td", now)
        with pytest.raises(BusUnavailable):
            await ledger.take("td", now, 1, 8, 800)
        with pytest.raises(BusUnavailable):
            await ledger.give_back("td", now, 1)
        with pytest.raises(BusUnavailable):
            await ledger.merge("td", now, QuotaUsage(1, 1))


async def test_history_is_a_capped_expiring_list_per_symbol(
    redis_url: str, redis_server: RedisServer
) -> None:
    async with open_backend(
        redis_url, registry_ttl=1.0, client_name="t", history_points=2, history_ttl=60
    ) as backend:
        token = await backend.lease.acquire("a")
        assert token is not None
        for entry in (b"1 10.5", b"2 10.6", b"3 10.7"):
            assert await backend.lease.publish(
                token, {}, "market-data:updates", b"m", history={"NIFTY 50": entry}
            )
    # An operator can read the chart's line with redis-cli.
    assert redis_server.cli("TYPE", "history:NIFTY 50").strip() == "list"
    assert redis_server.cli("LRANGE", "history:NIFTY 50", "0", "-1").split("\n")[:2] == [
        "2 10.6",
        "3 10.7",
    ]
    assert 0 < int(redis_server.cli("PTTL", "history:NIFTY 50")) <= 60_000


async def test_history_reads_fail_as_bus_unavailable_when_redis_is_down(
    redis_url: str, redis_server: RedisServer
) -> None:
    async with open_backend(redis_url, registry_ttl=1.0, client_name="t") as backend:
        assert await backend.history.read("TCS") == []
        redis_server.stop()  # the redis_url fixture starts it again for the next test
        with pytest.raises(BusUnavailable):
            await backend.history.read("TCS")


async def test_a_cancelled_adapter_call_always_ends_its_task(redis_url: str) -> None:
    # redis-py wraps socket writes in asyncio.wait_for, which on Python 3.11 drops a cancellation
    # that lands as the write completes; a loop of Redis calls then runs on after being cancelled
    # (a replica that failed to bind its port never exited). Cancel at many points of the call.
    async with open_backend(redis_url, registry_ttl=1.0, client_name="t") as backend:

        async def chatty() -> None:
            while True:  # as the heartbeat loop does, with no await of its own in between
                try:
                    await backend.bus.publish("market-data:control", b"beat")
                    await backend.snapshots.get(["TCS"])
                except BusUnavailable:
                    pass

        for attempt in range(200):
            task = asyncio.create_task(chatty())
            for _ in range(attempt % 12):
                await asyncio.sleep(0)
            task.cancel()
            done, _ = await asyncio.wait([task], timeout=2)
            if not done:
                while not task.done():  # each cancel may be swallowed again
                    task.cancel()
                    await asyncio.wait([task], timeout=0.1)
                raise AssertionError(f"attempt {attempt}: the cancelled task kept running")
