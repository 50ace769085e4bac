"""The alert store contract, on the memory store and on real Redis (with and without a prefix)."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from decimal import Decimal

import orjson
import pytest

from app.alerts.cluster_store import ClusterAlertStore
from app.alerts.evaluator import MESSAGE_PREFIX
from app.alerts.memory_store import MemoryAlertStore
from app.alerts.model import State
from app.alerts.redis_store import RedisAlertStore
from app.alerts.store import ALERTS_CHANNEL, Added, AlertStore, Change
from app.pubsub.cluster import connect_cluster
from app.pubsub.cluster_names import ClusterNames
from app.pubsub.redis import connect
from tests.alerts.conftest import Replica, alert, listening
from tests.support import eventually

BAND = Decimal("0.5")


async def test_alerts_per_owner_are_bounded_and_indexed_by_symbol(replicas: list[Replica]) -> None:
    store = replicas[0].alerts.store
    other = replicas[-1].alerts.store  # another replica sees the same alerts
    made = [alert(symbol=s) for s in ("AAPL", "AAPL", "MSFT")]
    for a in made:
        assert await store.add(a, 3) is Added.ADDED
    # The bound holds across replicas; another owner has a bound of its own.
    assert await other.add(alert(symbol="IBM"), 3) is Added.OWNER_FULL
    assert await store.add(alert(owner="anon:b", symbol="IBM"), 3) is Added.ADDED
    assert [a.id for a in await other.owned("anon:a")] == [a.id for a in made]
    assert await other.symbols() == {"AAPL", "MSFT", "IBM"}
    assert {a.id for a, _ in await other.for_symbols(["AAPL"])} == {made[0].id, made[1].id}
    assert not await other.remove("anon:b", made[2].id)  # not theirs
    assert await other.remove("anon:a", made[2].id)
    assert not await store.remove("anon:a", made[2].id)
    assert await store.symbols() == {"AAPL", "IBM"}  # no alert left on MSFT: out of the index
    assert await store.add(alert(symbol="NVDA"), 3) is Added.ADDED  # room again


async def test_firing_is_fenced_by_the_fetcher_term_and_happens_once(
    replicas: list[Replica],
) -> None:
    backend, store = replicas[0].backend, replicas[0].alerts.store
    got, listener = await listening(replicas[-1].backend, ALERTS_CHANNEL)
    a = alert()
    await store.add(a, 3)
    [(read, stored)] = await store.for_symbols(["AAPL"])
    fired = read.step(Decimal("111"), BAND, 5)
    assert fired is not None and fired.state is State.FIRED
    change = Change(
        stored, fired, BAND, (MESSAGE_PREFIX, b',"owner":"anon:a","id":"%s"}' % a.id.encode())
    )
    token = await backend.lease.acquire("me")
    assert token is not None
    assert await store.apply(token + 1, [change]) is None  # not the current term: nothing
    assert await store.inbox("anon:a") == []
    [(still, _)] = await store.for_symbols(["AAPL"])
    assert still.state is State.ARMED
    applied = await store.apply(token, [change])
    assert applied is not None
    [message] = applied.fired
    assert orjson.loads(message)["seq"] >= 1
    again = await store.apply(token, [change])  # the same change again: already applied
    assert again is not None and again.fired == []
    assert await store.inbox("anon:a") == [message]

    async def heard() -> bool:
        return [m.data for m in got] == [message]

    await eventually(heard, 5, "the fired message")
    [(now, _)] = await store.for_symbols(["AAPL"])
    assert now.state is State.FIRED and now.fired == 1
    await store.seen("anon:a", [message])
    assert await store.inbox("anon:a") == []
    listener.cancel()
    await asyncio.gather(listener, return_exceptions=True)


async def test_a_removed_alert_never_fires(replicas: list[Replica]) -> None:
    backend, store = replicas[0].backend, replicas[0].alerts.store
    a = alert()
    await store.add(a, 3)
    [(read, stored)] = await store.for_symbols(["AAPL"])
    await store.remove("anon:a", a.id)
    token = await backend.lease.acquire("me")
    assert token is not None
    fired = read.step(Decimal("111"), BAND, 5)
    assert fired is not None
    applied = await store.apply(token, [Change(stored, fired, BAND, (MESSAGE_PREFIX, b"}"))])
    assert applied is not None and applied.fired == []
    assert await store.inbox("anon:a") == []


async def test_replicas_agree_on_the_identity_key(replicas: list[Replica]) -> None:
    first = await replicas[0].alerts.identities()
    owner, cookie = first.issue()
    assert (await replicas[-1].alerts.identities()).browser(cookie) == owner
    assert first.browser(cookie[:-2] + "xx") is None  # forged


async def test_the_deployment_holds_a_bounded_number_of_alerts(
    replicas: list[Replica], kind: str, request: pytest.FixtureRequest
) -> None:
    """Anonymous browsers are free to make, so owners' bounds alone bound nothing."""
    backend = replicas[0].backend
    async with AsyncExitStack() as stack:
        store: AlertStore
        if kind == "memory":
            store = MemoryAlertStore(backend.lease, backend.bus, max_alerts=2)
        elif kind == "redis-cluster":
            cluster = connect_cluster(request.getfixturevalue("redis_cluster_url"), "cap")
            stack.push_async_callback(cluster.aclose)
            store = ClusterAlertStore(cluster, ClusterNames(backend.prefix), max_alerts=2)
        else:
            client = connect(request.getfixturevalue("redis_url"), "cap")
            stack.push_async_callback(client.aclose)
            store = RedisAlertStore(client, backend.prefix, max_alerts=2)
        assert await store.add(alert(owner="anon:1"), 3) is Added.ADDED
        assert await store.add(alert(owner="anon:2"), 3) is Added.ADDED
        assert await store.add(alert(owner="anon:3"), 3) is Added.STORE_FULL
        assert await store.owned("anon:3") == []
