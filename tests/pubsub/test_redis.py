"""Redis specifics: the keys are readable with redis-cli, errors are BusUnavailable, the
listener heals itself, and the chart's history is a plain capped list an operator can read."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Connection, Redis

from app.feeds.ledger import QuotaUsage, quota_windows
from app.pubsub import open_backend
from app.pubsub.base import (
    CONTROL_CHANNEL,
    SUBSCRIPTIONS_CHANNEL,
    UPDATES_CHANNEL,
    Backend,
    BusUnavailable,
)
from app.pubsub.redis import translated
from tests.pubsub.test_contract import Listener
from tests.support import RedisServer, eventually, free_port


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
    from app.pubsub.base import Backend

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


async def test_a_connection_closed_under_a_command_is_unavailable_and_our_bugs_are_not() -> None:
    """redis-py's cluster client may close a connection another task is using; the command then
    fails inside redis-py with AttributeError or RuntimeError (app.pubsub.redis
    .closed_under_the_call). Those are translated; the same errors raised by our code are not."""
    closed = Connection(port=free_port())  # never connected: no writer, as after disconnect()
    with pytest.raises(BusUnavailable, match="closed under the call"):
        with translated("writing"):
            await closed._send_packed_command([b"PING\r\n"])  # where the race lands
    for bug in (AttributeError("ours"), RuntimeError("ours")):
        with pytest.raises(type(bug)):
            with translated("writing"):
                raise bug
    with pytest.raises(NotImplementedError):  # a RuntimeError, raised by redis-py, not a loss
        with translated("asking"):
            await Redis(port=free_port()).memory_doctor()


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


async def exercise(backend: Backend) -> None:
    """Make every adapter write what it writes in production."""
    now = time.time()
    await backend.snapshots.put({"TCS": b"q"})
    await backend.registry.report("r1", {"TCS": 1})
    await backend.registry.reconcile()
    token = await backend.lease.acquire("r1:n")
    assert token is not None
    assert await backend.lease.publish(
        token, {"TCS": b"q2"}, UPDATES_CHANNEL, b"m", history={"TCS": b"1 10"}
    )
    await backend.quotas.take("twelvedata", now, 1, 8, 800)
    stop = QuotaUsage(paused_until=now + 30, disabled_until=now + 60)
    await backend.quotas.merge("twelvedata", now, stop)


async def test_every_key_and_channel_carries_the_prefix(
    redis_url: str, redis_server: RedisServer
) -> None:
    channels = [UPDATES_CHANNEL, CONTROL_CHANNEL, SUBSCRIPTIONS_CHANNEL]
    async with open_backend(redis_url, registry_ttl=5, client_name="t", prefix="{s1}:") as backend:
        async with Listener(backend, channels) as listener:
            assert set(redis_server.cli("PUBSUB", "CHANNELS").split()) == {
                "{s1}:" + c for c in channels
            }
            await exercise(backend)
            for channel in channels:
                await backend.bus.publish(channel, b"x")
            # The ports keep speaking logical names: the prefix is the adapter's business.
            got = [await listener.get() for _ in range(4)]
            assert [m.channel for m in got] == [UPDATES_CHANNEL, *channels]
            assert await backend.snapshots.get(["TCS"]) == {"TCS": b"q2"}
            assert await backend.history.read("TCS") == [b"1 10"]
    keys = set(redis_server.cli("--scan").split("\n")) - {""}
    minute, day = quota_windows(time.time())
    assert {k for k in keys if not k.startswith("quota:")} == {
        "{s1}:" + k
        for k in (
            "quotes:last", "history:TCS", "subscriptions:replica:r1", "subscriptions:replicas",
            "subscriptions:active", "subscriptions:count:TCS", "fetcher:lease", "fetcher:term",
            f"quota:twelvedata:minute:{minute}", f"quota:twelvedata:day:{day}",
            "quota:twelvedata:paused", "quota:twelvedata:disabled",
        )
    }  # fmt: skip


async def test_two_dbs_on_one_server_never_hear_each_other(redis_url: str) -> None:
    # Pub/sub ignores DB numbers: without the default prefix, DB 1's clients got DB 0's quotes.
    db1 = redis_url.removesuffix("/0") + "/1"
    db2 = redis_url.removesuffix("/0") + "?db=2"  # the other way to name a DB
    async with (
        open_backend(redis_url, registry_ttl=5, client_name="a") as a,
        open_backend(db1, registry_ttl=5, client_name="b") as b,
        open_backend(db2, registry_ttl=5, client_name="c") as c,
    ):
        assert (a.prefix, b.prefix, c.prefix) == ("", "db1:", "db2:")
        channels = [UPDATES_CHANNEL, CONTROL_CHANNEL]
        async with (
            Listener(a, channels) as hear_a,
            Listener(b, channels) as hear_b,
            Listener(c, channels) as hear_c,
        ):
            for backend, name in ((a, b"a"), (b, b"b"), (c, b"c")):
                await backend.bus.publish(UPDATES_CHANNEL, name)
                token = await backend.lease.acquire(name.decode())
                assert token is not None  # each DB has its own lease
                assert await backend.lease.publish(token, {}, UPDATES_CHANNEL, name + b"!")
                await backend.bus.publish(CONTROL_CHANNEL, name + b"?")
            for listener, name in ((hear_a, b"a"), (hear_b, b"b"), (hear_c, b"c")):
                got = [(await listener.get()).data for _ in range(3)]
                assert got == [name, name + b"!", name + b"?"]
            # Nothing else arrives: a marker published last is the next thing each one hears.
            for backend, listener in ((a, hear_a), (b, hear_b), (c, hear_c)):
                await backend.bus.publish(UPDATES_CHANNEL, b"end")
                assert (await listener.get()).data == b"end"
