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
from app.pubsub.cluster import cluster_client
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
            url = request.getfixturevalue("redis_cluster_url")
            cluster = await stack.enter_async_context(cluster_client(url, "cap"))
            store = ClusterAlertStore(cluster, ClusterNames(backend.prefix), max_alerts=2)
        else:
            client = connect(request.getfixturevalue("redis_url"), "cap")
            stack.push_async_callback(client.aclose)
            store = RedisAlertStore(client, backend.prefix, max_alerts=2)
        assert await store.add(alert(owner="anon:1"), 3) is Added.ADDED
        assert await store.add(alert(owner="anon:2"), 3) is Added.ADDED
        assert await store.add(alert(owner="anon:3"), 3) is Added.STORE_FULL
        assert await store.owned("anon:3") == []


async def test_only_the_alerts_a_price_reaches_are_read_in_bounded_batches(
    replicas: list[Replica],
) -> None:
    store = replicas[0].alerts.store
    ups = [alert(owner=f"anon:u{n}", value=v) for n, v in enumerate(["101", "102", "103", "120"])]
    downs = [alert(owner=f"anon:d{n}", kind="below", value=v) for n, v in enumerate(["95", "90"])]
    for a in [*ups, *downs, alert(owner="anon:m", symbol="MSFT", value="101")]:
        assert await store.add(a, 3) is Added.ADDED
    none = await store.due({"AAPL": Decimal("100")}, 10)
    assert none.alerts == [] and none.more == set()
    some = await store.due({"AAPL": Decimal("102")}, 10)
    assert {a.id for a, _ in some.alerts} == {ups[0].id, ups[1].id} and some.more == set()
    low = await store.due({"AAPL": Decimal("94.5")}, 10)
    assert {a.id for a, _ in low.alerts} == {downs[0].id}
    batch = await store.due({"AAPL": Decimal("130"), "MSFT": Decimal("100")}, 2)
    assert [a.id for a, _ in batch.alerts] == [ups[0].id, ups[1].id]  # lowest levels first
    assert batch.more == {"AAPL"}
    # Fired, an `above 101` alert waits for the price to come back to 101 × (1 − 0.5 %) = 100.495.
    token = await replicas[0].backend.lease.acquire("me")
    assert token is not None
    [(read, stored)] = (await store.due({"AAPL": Decimal("101")}, 10)).alerts
    fired = read.step(Decimal("101"), BAND, 1)
    assert fired is not None
    applied = await store.apply(token, [Change(stored, fired, BAND, (MESSAGE_PREFIX, b"}"))])
    assert applied is not None and len(applied.fired) == 1
    assert (await store.due({"AAPL": Decimal("101")}, 10)).alerts == []
    [(back, _)] = (await store.due({"AAPL": Decimal("100.49")}, 10)).alerts
    assert back.id == read.id and back.state is State.FIRED


async def test_an_idle_anonymous_owners_alerts_expire(replicas: list[Replica]) -> None:
    store, other = replicas[0].alerts.store, replicas[-1].alerts.store
    idle, seen, user = alert(owner="anon:idle"), alert(owner="anon:seen"), alert(owner="user:u")
    for a in (idle, seen, user):
        assert await store.add(a, 3, now_ms=1_000) is Added.ADDED
    await other.touch(["anon:seen"], 5_000)  # a visit, on another replica
    assert await other.expire(2_000) == 1
    assert await store.owned("anon:idle") == []
    assert [a.id for a in await store.owned("anon:seen")] == [seen.id]
    assert [a.id for a in await store.owned("user:u")] == [user.id]  # signed in: never expire
    assert {a.id for a, _ in await store.for_symbols(["AAPL"])} == {seen.id, user.id}
    assert await store.expire(2_000) == 0
    assert await store.expire(10**13) == 1  # users are never swept
    assert await store.symbols() == {"AAPL"}
    await store.remove("user:u", user.id)
    assert await store.symbols() == set()


async def test_the_symbols_with_alerts_are_bounded(replicas: list[Replica]) -> None:
    store = replicas[0].alerts.store
    for n, symbol in enumerate(["AAPL", "MSFT"]):
        assert await store.add(alert(owner=f"anon:{n}", symbol=symbol), 3, max_symbols=2) is (
            Added.ADDED
        )
    assert await store.add(alert(owner="anon:x", symbol="IBM"), 3, max_symbols=2) is (
        Added.SYMBOLS_FULL
    )
    assert await store.add(alert(owner="anon:x", symbol="MSFT"), 3, max_symbols=2) is (
        Added.ADDED
    )  # a symbol that has alerts already costs nothing more
    assert await store.symbols() == {"AAPL", "MSFT"}


async def test_the_rate_of_alerts_per_address_holds_across_replicas(
    replicas: list[Replica],
) -> None:
    stores = [r.alerts.store for r in replicas]
    waits = [await stores[n % len(stores)].take("10.0.0.1") for n in range(21)]
    assert waits[:20] == [0.0] * 20 and waits[20] > 0  # a burst of 20 (open_alerts' default)
    assert await stores[0].take("10.0.0.2") == 0.0  # another address has its own
    await stores[-1].refund("10.0.0.1")
    assert await stores[0].take("10.0.0.1") == 0.0


async def test_a_rearm_that_lost_its_compare_and_set_is_not_counted(
    replicas: list[Replica],
) -> None:
    backend, store = replicas[0].backend, replicas[0].alerts.store
    token = await backend.lease.acquire("me")
    assert token is not None
    await store.add(alert(), 3)
    [(read, stored)] = await store.for_symbols(["AAPL"])
    fired = read.step(Decimal("111"), BAND, 1)
    assert fired is not None
    await store.apply(token, [Change(stored, fired, BAND, (MESSAGE_PREFIX, b"}"))])
    rearmed = fired.step(Decimal("100"), BAND, 2)
    assert rearmed is not None
    stale = await store.apply(token, [Change(stored, rearmed, BAND)])  # `old` is not stored
    assert stale is not None and stale.rearmed == 0
    done = await store.apply(token, [Change(fired.encode(), rearmed, BAND)])
    assert done is not None and done.rearmed == 1 and done.fired == []


async def test_alerts_of_owners_not_seen_for_the_idle_days_are_swept(
    replicas: list[Replica],
) -> None:
    alerts = replicas[0].alerts
    old = alert(owner="anon:old")
    back = alert(owner="anon:back")
    for a in (old, back):
        assert await alerts.store.add(a, 3, now_ms=1_000) is Added.ADDED  # 1970: long idle
    await replicas[-1].alerts.visited("anon:back")  # its page, on any replica
    assert await alerts.sweep() == 1
    assert await alerts.store.owned("anon:old") == []
    assert [a.id for a in await alerts.store.owned("anon:back")] == [back.id]
    assert alerts.counts["expired"] == 1


@pytest.mark.parametrize("kind", ["redis"], indirect=True)
async def test_alerts_stored_before_the_price_index_are_indexed_once(
    replicas: list[Replica],
) -> None:
    """What the previous layout stored (the hash, `alerts:symbol:*`, no index, no idle clock)
    fires after an upgrade, and expires like any other."""
    store = replicas[0].alerts.store
    client = store._client  # type: ignore[attr-defined]
    old = alert(owner="anon:old")
    await client.hset("alerts:all", old.id, old.encode())
    await client.sadd("alerts:owner:anon:old", old.id)
    await client.sadd("alerts:symbol:AAPL", old.id)
    await client.sadd("alerts:symbols", "AAPL")
    assert (await store.due({"AAPL": Decimal("111")}, 10)).alerts == []
    assert await store.reindex(BAND, 5_000) == 1
    assert await replicas[-1].alerts.store.reindex(BAND, 6_000) == 0  # once
    assert [a.id for a, _ in (await store.due({"AAPL": Decimal("111")}, 10)).alerts] == [old.id]
    assert not await client.exists("alerts:symbol:AAPL")
    assert await store.expire(5_001) == 1
    assert await store.symbols() == set()
