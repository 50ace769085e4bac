"""The Redis Cluster adapters against a real three-master cluster (tests/support.RedisCluster):
sharded publish, per-replica shard following, the per-shard fence, and the cost per replica."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import AsyncIterator
from decimal import Decimal

import orjson
import pytest
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException

from app.core.latest import LatestQuotes
from app.models import FeedStatus, Quote, encode_quote, encode_update, parse_update
from app.pubsub import open_backend
from app.pubsub.base import CONTROL_CHANNEL, UPDATES_CHANNEL, Backend, BusUnavailable, Message
from app.pubsub.cluster import ClusterBus, ClusterLease, cluster_client, split_update
from app.pubsub.cluster_names import ClusterNames, shard_of
from tests.support import RedisCluster, eventually, free_port

SHARDS = 16


@pytest.fixture
async def cluster_backend(redis_cluster_url: str) -> AsyncIterator[Backend]:
    async with open_backend(
        redis_cluster_url, registry_ttl=5.0, client_name="t", cluster=True, shards=SHARDS
    ) as backend:
        yield backend


def quote(symbol: str, seq: int, price: str = "100.00") -> Quote:
    d = Decimal(price)
    return Quote(
        symbol, d, Decimal(0), Decimal(0), d, d, d, d, None, "USD", "SIM", symbol, "simulated",
        1_700_000_000_000, True, seq, 1,
    )  # fmt: skip


class Listener:
    def __init__(self, backend: Backend, channels: list[str]) -> None:
        self.messages: list[Message] = []
        self.downs = 0
        self.up = asyncio.Event()
        self._task = asyncio.create_task(self._run(backend, channels))

    async def _run(self, backend: Backend, channels: list[str]) -> None:
        def state(up: bool) -> None:
            if up:
                self.up.set()
            else:
                self.downs += 1
                self.up.clear()

        async for message in backend.bus.listen(channels, state):
            self.messages.append(message)

    async def __aenter__(self) -> Listener:
        await asyncio.wait_for(self.up.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    def updates(self) -> list[bytes]:
        return [m.data for m in self.messages if m.channel == UPDATES_CHANNEL]


async def publish(backend: Backend, token: int, quotes: list[Quote], **extra: object) -> bool:
    encoded = {q.symbol: encode_quote(q) for q in quotes}
    message = encode_update(token, list(encoded.values()), **extra)  # type: ignore[arg-type]
    points = {q.symbol: b"[1,%s]" % str(q.price).encode() for q in quotes}
    return await backend.lease.publish(token, encoded, UPDATES_CHANNEL, message, history=points)


def test_split_update_keeps_each_shard_its_own_and_the_status_everywhere() -> None:
    names = ClusterNames("", 4)
    quotes = {s: encode_quote(quote(s, 1)) for s in ["AAPL", "TCS", "INFY", "MSFT"]}
    status = FeedStatus("stale", "provider_down")
    message = encode_update(9, list(quotes.values()), status, (), 2.0, ["IBM"], 1234)
    parts = split_update(message, quotes, names)
    assert sorted(parts) == [0, 1, 2, 3]
    seen = []
    for shard, part in parts.items():
        update = parse_update(part)
        assert update.epoch == 9 and update.status == status and update.refresh == 2.0
        assert all(shard_of(q.symbol, 4) == shard for q in update.quotes)
        seen += [q.symbol for q in update.quotes]
        assert update.confirmed == (("IBM",) if shard_of("IBM", 4) == shard else ())
    assert sorted(seen) == sorted(quotes)


async def test_a_cluster_node_without_cluster_mode_is_refused_at_start(
    redis_cluster_url: str,
) -> None:
    with pytest.raises(RuntimeError, match="set REDIS_CLUSTER=on"):
        async with open_backend(redis_cluster_url, registry_ttl=5.0, client_name="t"):
            pass


async def test_a_new_client_has_read_the_slots_before_its_first_concurrent_commands(
    redis_cluster_url: str,
) -> None:
    """redis-py 8.1: commands that start at once on a fresh cluster client lose connections to
    its first topology read. Without retries to hide it, all 30 must go through."""
    async with cluster_client(redis_cluster_url, "t", retry=Retry(NoBackoff(), 0)) as client:
        results = await asyncio.gather(*(client.incr("n") for _ in range(30)))
    assert sorted(results) == list(range(1, 31))


async def test_a_client_of_a_cluster_that_does_not_answer_opens_and_leaves_the_read_for_later(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The app starts (and says it is degraded) while its Redis is down."""
    with caplog.at_level(logging.WARNING, logger="app.pubsub.cluster"):
        async with cluster_client(f"redis://127.0.0.1:{free_port()}", "t") as client:
            assert "slots are not read yet" in caplog.text
            with pytest.raises(RedisClusterException):
                await client.ping()


async def test_a_plain_server_given_as_a_cluster_is_refused_at_start(redis_url: str) -> None:
    with pytest.raises(RuntimeError, match="without cluster mode: unset REDIS_CLUSTER"):
        async with open_backend(redis_url, registry_ttl=5.0, client_name="t", cluster=True):
            pass


def test_a_prefix_with_a_hash_tag_is_refused() -> None:
    with pytest.raises(ValueError, match="must not contain"):
        ClusterNames("{app}:", 16)


async def test_a_listener_hears_only_the_shards_of_what_its_replica_watches(
    cluster_backend: Backend,
) -> None:
    token = await cluster_backend.lease.acquire("me")
    assert token is not None
    watched, other = (
        "AAPL",
        next(
            s
            for s in (f"S{i}" for i in range(100))
            if shard_of(s, SHARDS) != shard_of("AAPL", SHARDS)
        ),
    )
    async with Listener(cluster_backend, [UPDATES_CHANNEL, CONTROL_CHANNEL]) as listener:
        await cluster_backend.registry.report("r1", {watched: 1})
        assert await publish(cluster_backend, token, [quote(watched, 1), quote(other, 1)])
        await cluster_backend.bus.publish(CONTROL_CHANNEL, b"beat")
        await eventually(
            lambda: _true(len(listener.updates()) == 1 and len(listener.messages) == 2),
            what="one update and the heartbeat",
        )
        update = parse_update(listener.updates()[0])
        assert [q.symbol for q in update.quotes] == [watched]
        # Now watching the other one instead: its shard is followed (its stored quote handed
        # on at once), AAPL's is left.
        await cluster_backend.registry.report("r1", {other: 1})
        assert await publish(cluster_backend, token, [quote(watched, 2), quote(other, 2)])

        def heard() -> list[tuple[str, int]]:
            updates = [parse_update(data) for data in listener.updates()]
            return [(q.symbol, q.seq) for u in updates for q in u.quotes]

        await eventually(lambda: _true((other, 2) in heard()), what="the second update")
        assert heard() == [(watched, 1), (other, 1), (other, 2)]
    stored = await cluster_backend.snapshots.get([watched, other, "NOPE"])
    assert {s: Quote_seq(b) for s, b in stored.items()} == {watched: 2, other: 2}
    assert len(await cluster_backend.snapshots.get_all()) == 2
    assert await cluster_backend.history.read(watched) == [b"[1,100.00]", b"[1,100.00]"]
    sampled = await cluster_backend.history.sample([other, "NOPE", watched], 2)
    assert sampled == [[b"[1,100.00]"] * 2, [], [b"[1,100.00]"] * 2]


async def test_a_newly_followed_shard_catches_up_from_the_store(cluster_backend: Backend) -> None:
    """What was published on a shard between a client's snapshot read and the SSUBSCRIBE that
    follows it is handed on from the store once the subscription holds."""
    token = await cluster_backend.lease.acquire("me")
    assert token is not None
    async with Listener(cluster_backend, [UPDATES_CHANNEL, CONTROL_CHANNEL]) as listener:
        assert await publish(cluster_backend, token, [quote("AAPL", 7)])  # nobody follows it
        assert listener.updates() == []
        await cluster_backend.registry.report("r1", {"AAPL": 1})
        await eventually(lambda: _true(len(listener.updates()) == 1), what="the catch-up")
        [caught] = parse_update(listener.updates()[0]).quotes
        assert (caught.symbol, caught.seq) == ("AAPL", 7)


async def test_a_held_quote_of_a_shard_not_followed_is_read_from_the_store(
    cluster_backend: Backend,
) -> None:
    """A replica that stopped following a shard hears none of its updates: what it holds of
    those symbols may be old, so a snapshot read goes to the store."""
    token = await cluster_backend.lease.acquire("me")
    assert token is not None
    latest = LatestQuotes(cluster_backend.snapshots, lambda quotes: [*map(latest.remember, quotes)])
    latest.remember(quote("AAPL", 1))
    assert await publish(cluster_backend, token, [quote("AAPL", 2, "101.00")])
    [read] = await latest.read(["AAPL"])
    assert (read.seq, str(read.price)) == (2, "101.00")


async def test_a_lapsed_shard_fence_is_renewed_while_the_lease_holds(
    cluster_backend: Backend, redis_cluster: RedisCluster
) -> None:
    """A shard whose copy of the term is gone (its master failed over, or missed a renewal)
    is fenced again by the term that still holds the lease, not taken as the end of the term;
    a term that no longer holds it still cannot write."""
    names = ClusterNames("", SHARDS)
    token = await cluster_backend.lease.acquire("me")
    assert token is not None
    copy = names.shard_lease(names.shard("AAPL"))
    assert redis_cluster.owner(copy).cli("DEL", copy).strip() == "1"
    assert await publish(cluster_backend, token, [quote("AAPL", 1)])
    assert redis_cluster.owner(copy).cli("GET", copy).strip() == str(token)
    await cluster_backend.lease.release("me", token)
    assert not await publish(cluster_backend, token, [quote("AAPL", 2)])
    assert Quote_seq((await cluster_backend.snapshots.get(["AAPL"]))["AAPL"]) == 1


async def test_following_and_leaving_a_shard_in_quick_turns_is_no_outage(
    cluster_backend: Backend,
) -> None:
    """Our own SUNSUBSCRIBE's reply, arriving after the shard is wanted again, is not taken for
    the server's (a slot that moved), which would reconnect and tell clients `delayed`."""
    bus = cluster_backend.bus
    assert isinstance(bus, ClusterBus)
    token = await cluster_backend.lease.acquire("me")
    assert token is not None
    async with Listener(cluster_backend, [UPDATES_CHANNEL, CONTROL_CHANNEL]) as listener:
        for _ in range(30):
            bus.interest.want(["AAPL"])
            await bus.interest.settle(5)
            bus.interest.want([])
            for _ in range(3):
                await asyncio.sleep(0)  # the SUNSUBSCRIBE goes out
            bus.interest.want(["AAPL"])
            await bus.interest.settle(5)
        assert await publish(cluster_backend, token, [quote("AAPL", 1)])
        await eventually(lambda: _true(len(listener.updates()) >= 1), what="the update")
        assert listener.downs == 0


async def test_a_hung_master_failed_over_is_noticed_by_its_shards_silence(
    redis_cluster_replicated: RedisCluster,
) -> None:
    """A master that hangs (SIGSTOP: its sockets stay open, nothing comes) is failed over to
    its replica; the listener, still connected to it, hears nothing on its shard while the
    other shards hear the fetcher, calls it deaf, and follows the shard on the new master."""
    cluster = redis_cluster_replicated
    names = ClusterNames("", SHARDS)
    lease_node = cluster.owner(names.lease)
    owners = {s: cluster.owner(names.updates(names.shard(s))) for s in (f"S{i}" for i in range(99))}
    hung = next(s for s, node in owners.items() if node is not lease_node)
    other = next(s for s, node in owners.items() if node not in (lease_node, owners[hung]))
    victim = owners[hung]
    assert victim.proc is not None
    async with open_backend(
        cluster.url, registry_ttl=30.0, client_name="t", cluster=True, shards=SHARDS
    ) as backend:
        token = await backend.lease.acquire("me")
        assert token is not None
        async with Listener(backend, [UPDATES_CHANNEL, CONTROL_CHANNEL]) as listener:
            await backend.registry.report("r1", {hung: 1, other: 1})
            victim.proc.send_signal(signal.SIGSTOP)
            try:
                deadline = time.monotonic() + 40
                seq = 0
                # Nothing of `hung` was published before the stop: any of it heard is news.
                while not listener.downs or not heard_after(listener, hung, 0):
                    assert time.monotonic() < deadline, "the hung shard was never heard again"
                    seq += 1
                    try:
                        token = await backend.lease.acquire("me") or token
                        await publish(backend, token, [quote(hung, seq), quote(other, seq)])
                    except BusUnavailable:
                        pass
                    await asyncio.sleep(0.05)  # the fetcher's pace
            finally:
                victim.proc.send_signal(signal.SIGCONT)
    assert cluster.owner(names.updates(names.shard(hung))) is not victim


def heard_after(listener: Listener, symbol: str, seq: int) -> bool:
    return any(
        q.symbol == symbol and q.seq > seq
        for data in listener.updates()
        for q in parse_update(data).quotes
    )


def Quote_seq(data: bytes) -> int:  # noqa: N802
    return int(orjson.loads(data)["seq"])


async def _true(value: bool) -> bool | None:
    return value or None


async def test_a_deposed_term_cannot_write_any_shard(cluster_backend: Backend) -> None:
    lease = cluster_backend.lease
    old = await lease.acquire("old")
    assert old is not None
    await lease.release("old", old)
    new = await lease.acquire("new")
    assert new is not None and new > old
    assert not await publish(cluster_backend, old, [quote("AAPL", 5)])
    assert await cluster_backend.snapshots.get(["AAPL"]) == {}
    assert await publish(cluster_backend, new, [quote("AAPL", 1)])
    # The old term, even holding the lease's key again, is below what every shard has seen.
    assert isinstance(lease, ClusterLease)
    await lease.release("new", new)


@pytest.mark.parametrize(("shards", "watching"), [(16, 10), (256, 10), (16, 100)])
async def test_cost_per_replica_of_1000_symbols(
    redis_cluster_url: str, shards: int, watching: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """The figures in the README: what one replica's listener receives, against what the
    fetcher publishes, with 1,000 symbols over `shards` shards and its clients watching
    `watching` of them (10: one client's watchlist; 100: ten clients' with no overlap)."""
    async with open_backend(
        redis_cluster_url,
        registry_ttl=5.0,
        client_name="t",
        cluster=True,
        shards=shards,
        lease_ttl=120.0,  # ten ticks to 256 shards outlast the default 2 s on a loaded machine
    ) as backend:
        bus, lease = backend.bus, backend.lease
        assert isinstance(bus, ClusterBus) and isinstance(lease, ClusterLease)
        token = await lease.acquire("me")
        assert token is not None
        symbols = [f"SIM{i:04d}" for i in range(1000)]
        watched = symbols[:: 1000 // watching]
        followed = {shard_of(s, shards) for s in watched}
        ticks = 10
        async with Listener(backend, [UPDATES_CHANNEL, CONTROL_CHANNEL]) as listener:
            await backend.registry.report("r1", dict.fromkeys(watched, 1))
            started = time.perf_counter()
            for seq in range(1, ticks + 1):
                assert await publish(backend, token, [quote(s, seq) for s in symbols])
            spent = time.perf_counter() - started
            await eventually(
                lambda: _true(len(listener.updates()) == ticks * len(followed)),
                what="every update of the followed shards",
            )
            heard = {q.symbol for data in listener.updates() for q in parse_update(data).quotes}
        assert set(watched) <= heard
        assert {shard_of(s, shards) for s in heard} == followed
        share = bus.update_bytes / lease.published_bytes
        with capsys.disabled():
            print(
                f"\n{shards} shards, watching {watching}: {len(followed)} shards followed, "
                f"{bus.update_messages // ticks} of {lease.published_messages // ticks} messages "
                f"and {bus.update_bytes / ticks / 1024:.0f} of "
                f"{lease.published_bytes / ticks / 1024:.0f} KiB a tick ({share:.0%}), "
                f"{len(heard)} of 1,000 symbols; publish {spent / ticks * 1000:.0f} ms a tick"
            )
        assert share < len(followed) / shards * 1.3
