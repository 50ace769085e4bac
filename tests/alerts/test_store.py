"""The alert store contract, on the memory store and on real Redis (with and without a prefix)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import orjson

from app.alerts.evaluator import MESSAGE_PREFIX
from app.alerts.model import State
from app.alerts.store import ALERTS_CHANNEL, Change
from tests.alerts.conftest import Replica, alert, listening
from tests.support import eventually

BAND = Decimal("0.5")


async def test_alerts_per_owner_are_bounded_and_indexed_by_symbol(replicas: list[Replica]) -> None:
    store = replicas[0].alerts.store
    other = replicas[-1].alerts.store  # another replica sees the same alerts
    made = [alert(symbol=s) for s in ("AAPL", "AAPL", "MSFT")]
    for a in made:
        assert await store.add(a, 3)
    assert not await other.add(alert(symbol="IBM"), 3)  # the bound holds across replicas
    assert await store.add(alert(owner="anon:b", symbol="IBM"), 3)  # another owner's own bound
    assert [a.id for a in await other.owned("anon:a")] == [a.id for a in made]
    assert await other.symbols() == {"AAPL", "MSFT", "IBM"}
    assert {a.id for a, _ in await other.for_symbols(["AAPL"])} == {made[0].id, made[1].id}
    assert not await other.remove("anon:b", made[2].id)  # not theirs
    assert await other.remove("anon:a", made[2].id)
    assert not await store.remove("anon:a", made[2].id)
    assert await store.symbols() == {"AAPL", "IBM"}  # no alert left on MSFT: out of the index
    assert await store.add(alert(symbol="NVDA"), 3)  # room again


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
        stored, fired, (MESSAGE_PREFIX, b',"owner":"anon:a","id":"%s"}' % a.id.encode())
    )
    token = await backend.lease.acquire("me")
    assert token is not None
    assert await store.apply(token + 1, [change]) is None  # not the current term: nothing
    assert await store.inbox("anon:a") == []
    [(still, _)] = await store.for_symbols(["AAPL"])
    assert still.state is State.ARMED
    [message] = await store.apply(token, [change]) or []
    assert orjson.loads(message)["seq"] >= 1
    assert await store.apply(token, [change]) == []  # the same change again: already applied
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
    assert await store.apply(token, [Change(stored, fired, (MESSAGE_PREFIX, b"}"))]) == []
    assert await store.inbox("anon:a") == []


async def test_replicas_agree_on_the_identity_key(replicas: list[Replica]) -> None:
    first = await replicas[0].alerts.identities()
    owner, cookie = first.issue()
    assert (await replicas[-1].alerts.identities()).browser(cookie) == owner
    assert first.browser(cookie[:-2] + "xx") is None  # forged
    assert first.owner("alice", cookie) == "user:alice"  # signed in: the user's alerts
