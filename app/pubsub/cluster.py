"""Redis Cluster adapters: sharded pub/sub, and the single-server layout with hash tags.

Past what one Redis server carries, a deployment moves to Redis Cluster (`REDIS_CLUSTER=on`).
What changes from app.pubsub.redis (key layout: app.pubsub.cluster_names):

- Updates go out per shard: each fetch tick's message is split into one message per shard
  (`REDIS_SHARDS`, a symbol's shard is `crc32(symbol) % shards`), each carrying that shard's
  quotes, confirmations and rejections, plus the feed's status and refresh interval (so every
  replica that hears any shard hears the status), published with SPUBLISH on the shard's
  channel. Every shard gets a message on every publish, so a replica hears the fetcher on each
  shard it follows.
- Each replica's listener follows only the shards of the symbols its clients watch: the
  registry report (which already says, on every change, what this replica watches) sets the
  listener's interest, and waits (bounded) until the new shards' SSUBSCRIBEs are confirmed, so
  the fetcher, told of a new symbol after the report, publishes to a listener already there.
  A snapshot read of a symbol whose shard is not followed goes to the store every time
  (`covers`), since this process hears none of its updates.
- The listener holds one plain connection per node that owns a followed channel (redis-py's
  cluster pub/sub polls its per-node connections in turn, each with the read timeout, which
  would add up to a second per node to a message's latency); any error, and a slot that moved
  (the server's own `sunsubscribe`), ends the round: the listener reports itself disconnected
  (clients hear `delayed`), re-reads the cluster's slots, subscribes again and reports itself
  connected, and the hub re-reads its watched symbols' snapshots.
- The fence: a script may touch one slot, and the lease is in another slot than a shard's
  snapshots. The leader copies its term into every shard (`fetcher:lease:{sK}`, with the
  lease's TTL, renewed with it) and each shard's publish script checks that copy; the copy is
  written only by a term at least as new as the newest the shard has seen (`fetcher:term:{sK}`),
  so once a new term has fenced a shard, an older one can no longer write there, and a term
  whose lease ran out stops writing when its copies expire (within a round trip of the lease).
  A tick is all or nothing per shard, not across shards: a shard whose node is down misses that
  tick's update while the others get theirs.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import orjson
from redis.asyncio import ConnectionPool
from redis.asyncio import Redis as NodeClient
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff

from app.pubsub.base import UPDATES_CHANNEL, BusUnavailable, LeaseHolder, Message, StateCallback
from app.pubsub.cluster_names import ClusterNames, group_by_shard
from app.pubsub.redis import (
    _ACQUIRE,
    _RELEASE,
    BACKOFF_CAP,
    BACKOFF_START,
    PING_TIMEOUT,
    REDIS_ERRORS,
    RedisHistoryStore,
    RedisRegistry,
    _close_quietly,
    _now_ms,
    _text,
    closed_under_the_call,
    resume_cancellation,
    translated,
)

log = logging.getLogger(__name__)

# How long a registry report waits for new shards' subscriptions to be confirmed.
SETTLE_TIMEOUT = 2.0
# Ticks the other followed shards may hear while one hears nothing, before it is called deaf.
DEAF_AFTER = 5
# How long a round waits for its first subscriptions before giving up and starting again.
SUBSCRIBE_TIMEOUT = 5.0
# How long opening a client waits for the cluster's slots before leaving it to the first command.
INITIALIZE_TIMEOUT = 3.0


def connect_cluster(url: str, client_name: str, **options: Any) -> RedisCluster:
    """The cluster client. Unlike app.pubsub.redis.connect it retries a command up to 6 times
    (10-200 ms apart): a failover moves slots under it (MOVED, then one more try), and redis-py
    8.1 drops connections in use when it re-reads the topology (see `cluster_client`).
    `options` (TLS settings for rediss:// URLs; tests' own retry policy) override the defaults.

    No `CLIENT SETINFO` on connect (driver_info None): Redis before 7.2 refuses it."""
    settings: dict[str, Any] = {
        "socket_connect_timeout": 2.0,
        "socket_timeout": 5.0,
        "health_check_interval": 5,
        "retry": Retry(ExponentialWithJitterBackoff(0.01, 0.2), 6),
        "client_name": client_name,
        "driver_info": None,
    }
    client: RedisCluster = RedisCluster.from_url(url, **{**settings, **options})
    return client


@asynccontextmanager
async def cluster_client(url: str, client_name: str, **options: Any) -> AsyncIterator[RedisCluster]:
    """A cluster client that has read the cluster's slots before anyone uses it, closed on exit.

    A fresh redis-py 8.1 cluster client reads the topology on its first command; when several
    commands start at once, that read disconnects connections the others are using (the server
    logs "Connection reset by peer"; the client says "Connection closed by server"). Measured:
    30 concurrent INCRs on a fresh client without retries lost 3-14 every time, and none after
    one `initialize()`. A cluster that does not answer yet is read later by the first command,
    whose retries cover that race."""
    client = connect_cluster(url, client_name, **options)
    try:
        try:
            async with asyncio.timeout(INITIALIZE_TIMEOUT):
                await client.initialize()
        except (*REDIS_ERRORS, TimeoutError) as exc:
            if "Cluster mode is not enabled" in str(exc):
                raise RuntimeError(
                    "REDIS_CLUSTER=on, but REDIS_URL names a Redis server without cluster mode: "
                    "unset REDIS_CLUSTER (or point REDIS_URL at a cluster node)"
                ) from exc
            log.warning("redis cluster: its slots are not read yet (%s)", exc)
        yield client
    finally:
        await client.aclose()


# ---- splitting a tick's update by shard ------------------------------------------------------


def split_update(
    message: bytes, snapshots: Mapping[str, bytes], names: ClusterNames
) -> dict[int, bytes]:
    """One message per shard (every shard: the status rides on each) from the fetcher's whole
    `market-data:updates` message and its encoded quotes (`snapshots`, symbol -> the bytes the
    message carries), without re-encoding the quotes."""
    whole = orjson.loads(message)
    epoch = int(whole.get("epoch", 0))
    common = b""
    for field in ("refresh", "status"):
        if field in whole:
            common += b',"%s":%s' % (field.encode(), orjson.dumps(whole[field]))
    quotes = group_by_shard(snapshots, names.shards)
    confirmed = group_by_shard(whole.get("confirmed", ()), names.shards)
    rejected: dict[int, list[Any]] = {}
    for item in whole.get("rejected", ()):
        rejected.setdefault(names.shard(str(item.get("symbol", ""))), []).append(item)
    out: dict[int, bytes] = {}
    for shard in range(names.shards):
        text = b'{"epoch":%d,"quotes":[' % epoch
        text += b",".join(snapshots[s] for s in quotes.get(shard, ())) + b"]"
        if shard in confirmed:
            text += b',"confirmed":%s,"confirmed_at":%d' % (
                orjson.dumps(confirmed[shard]),
                int(whole.get("confirmed_at", 0)),
            )
        if shard in rejected:
            text += b',"rejected":' + orjson.dumps(rejected[shard])
        out[shard] = text + common + b"}"
    return out


# ---- which shards this process follows -------------------------------------------------------


class ShardInterest:
    """The shards this process's listener should follow (`wanted`, from the registry report) and
    those whose subscription the server confirmed (`heard`)."""

    def __init__(self, names: ClusterNames) -> None:
        self._names = names
        self.wanted: frozenset[int] = frozenset()
        self.symbols: tuple[str, ...] = ()  # what the wanted shards are for
        self.heard: set[int] = set()
        self._listeners: list[Callable[[], None]] = []
        self._settled = asyncio.Event()
        self._settled.set()

    def want(self, symbols: Sequence[str]) -> None:
        self.symbols = tuple(symbols)
        wanted = frozenset(self._names.shard(s) for s in symbols)
        if wanted != self.wanted:
            self.wanted = wanted
            self._check()
            for wake in self._listeners:
                wake()

    def covers(self, symbol: str) -> bool:
        return self._names.shard(symbol) in self.heard

    def confirmed(self, shard: int, subscribed: bool) -> None:
        if subscribed:
            self.heard.add(shard)
        else:
            self.heard.discard(shard)
        self._check()

    def lost(self) -> None:
        self.heard.clear()
        self._check()

    def _check(self) -> None:
        if self.wanted <= self.heard or not self._listeners:
            self._settled.set()
        else:
            self._settled.clear()

    async def settle(self, within: float) -> bool:
        try:
            async with asyncio.timeout(within):
                await self._settled.wait()
            return True
        except TimeoutError:
            resume_cancellation()
            return False

    def follow(self, wake: Callable[[], None]) -> Callable[[], None]:
        self._listeners.append(wake)
        self._check()

        def stop() -> None:
            self._listeners.remove(wake)
            self.lost()

        return stop


# ---- the bus ---------------------------------------------------------------------------------


class _NodeReader:
    """One plain pub/sub connection to one cluster node, read by its own task into `queue`."""

    def __init__(self, node: ClusterNode, queue: asyncio.Queue[Any]) -> None:
        kwargs = dict(node.connection_kwargs)
        kwargs["retry"] = Retry(NoBackoff(), 0)  # our round owns reconnection
        pool = ConnectionPool(connection_class=node.connection_class, **kwargs)
        self.client = NodeClient(connection_pool=pool)
        self.pubsub: PubSub = self.client.pubsub()
        self.channels: set[str] = set()
        # SUNSUBSCRIBEs we sent and whose reply has not come: any other `sunsubscribe` is the
        # server's (the channel's slot moved away from this node).
        self._leaving: Counter[str] = Counter()
        self._queue = queue
        self._task: asyncio.Task[None] | None = None

    async def subscribe(self, channels: Sequence[str]) -> None:
        for channel in channels:  # one SSUBSCRIBE per channel: one call may not span slots
            await self.pubsub.ssubscribe(channel)
            self.channels.add(channel)
        if self._task is None:
            self._task = asyncio.create_task(self._read())

    async def unsubscribe(self, channels: Sequence[str]) -> None:
        for channel in channels:
            self.channels.discard(channel)
            self._leaving[channel] += 1
            await self.pubsub.sunsubscribe(channel)

    async def _read(self) -> None:
        try:
            while True:
                raw = await self.pubsub.get_message(timeout=1.0)
                if raw is None:
                    continue
                if _text(raw["type"]) == "sunsubscribe":
                    channel = _text(raw["channel"])
                    raw["ours"] = self._leaving[channel] > 0
                    self._leaving[channel] -= 1
                    if self._leaving[channel] <= 0:
                        del self._leaving[channel]
                self._queue.put_nowait(raw)
        except REDIS_ERRORS as exc:
            self._queue.put_nowait(exc)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await _close_quietly(self.pubsub)
        try:
            await self.client.aclose()
        except REDIS_ERRORS as exc:
            log.debug("closing a node client: %s", exc)


class _Moved(Exception):
    """A followed channel's slot left its node (the server unsubscribed us)."""


class ClusterBus:
    def __init__(self, client: RedisCluster, names: ClusterNames, interest: ShardInterest) -> None:
        self._client = client
        self._names = names
        self.interest = interest
        # What this process's listener received on update channels (the cost per replica).
        self.update_messages = 0
        self.update_bytes = 0

    async def publish(self, channel: str, data: bytes) -> None:
        if channel == UPDATES_CHANNEL:
            with translated("publishing an update failed"):
                parsed = orjson.loads(data)
            snapshots = {str(q["symbol"]): orjson.dumps(q) for q in parsed.get("quotes", ())}
            parts = split_update(data, snapshots, self._names)
            for shard, part in parts.items():
                await self._spublish(self._names.updates(shard), part)
            return
        await self._spublish(self._names.channel(channel), data)

    async def _spublish(self, name: str, data: bytes) -> None:
        with translated(f"publish to {name} failed"):
            await self._client.spublish(name, data)

    async def listen(
        self, channels: Sequence[str], on_state: StateCallback | None = None
    ) -> AsyncGenerator[Message, None]:
        follow = UPDATES_CHANNEL in channels
        fixed = {self._names.channel(c) for c in channels if c != UPDATES_CHANNEL}
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = self.interest.follow(lambda: queue.put_nowait(None)) if follow else None
        delay = BACKOFF_START
        try:
            while True:
                readers: dict[str, _NodeReader] = {}
                connected = False
                try:
                    await self._client.initialize()
                    await self._subscribe(readers, queue, fixed, follow)
                    pending = set(fixed)
                    async with asyncio.timeout(SUBSCRIBE_TIMEOUT):
                        while pending:
                            item = await self._next(queue)
                            if item is not None:
                                self._note(item, pending, fixed)
                    connected = True
                    delay = BACKOFF_START
                    if on_state is not None:
                        on_state(True)
                    await self._subscribe(readers, queue, fixed, follow)  # wanted meanwhile
                    deaf = _DeafShards()
                    while True:
                        item = await self._next(queue)
                        if item is None:  # the interest changed
                            await self._subscribe(readers, queue, fixed, follow)
                            continue
                        message = self._note(item, set(), fixed)
                        if message is None and follow:
                            message = await self._catch_up(item)
                        elif message is not None and message.channel == UPDATES_CHANNEL:
                            deaf.heard(_shard_of_channel(_text(item["channel"])))
                            deaf.check(self.interest.heard)
                        if message is not None:
                            yield message
                except (*REDIS_ERRORS, BusUnavailable, TimeoutError, _Moved) as exc:
                    resume_cancellation()
                    if connected and on_state is not None:
                        on_state(False)
                    log.warning("redis cluster listener lost (%s); retrying in %.1fs", exc, delay)
                    await self._refresh_slots()
                finally:
                    if follow:
                        self.interest.lost()
                    for reader in readers.values():
                        await reader.close()
                resume_cancellation()
                while not queue.empty():
                    queue.get_nowait()
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, BACKOFF_CAP)
        finally:
            if stop is not None:
                stop()

    async def _catch_up(self, raw: dict[str, Any]) -> Message | None:
        """A shard newly followed: what was published on it before our SSUBSCRIBE took hold
        (after the client's snapshot was read) is lost, so hand its watched symbols' stored
        quotes on as an update (the hub keeps only those newer than it has, as on a resync)."""
        if _text(raw["type"]) != "ssubscribe":
            return None
        channel = _text(raw["channel"])
        if self._names.logical(channel) != UPDATES_CHANNEL:
            return None
        shard = _shard_of_channel(channel)
        symbols = [s for s in self.interest.symbols if self._names.shard(s) == shard]
        if not symbols:
            return None
        with translated(f"reading the stored quotes of shard {shard}"):
            key = self._names.last_quotes_of(shard)
            values: list[Any] = await self._client.hmget(key, symbols)
        stored = [bytes(v) for v in values if v is not None]
        if not stored:
            return None
        return Message(UPDATES_CHANNEL, b'{"epoch":0,"quotes":[' + b",".join(stored) + b"]}")

    async def _refresh_slots(self) -> None:
        """Re-read the cluster's slots: a failover or a resharding moved them."""
        try:
            with translated("re-reading the cluster's slots failed"):
                await self._client.nodes_manager.initialize()
        except BusUnavailable as exc:
            log.debug("%s", exc)

    async def _next(self, queue: asyncio.Queue[Any]) -> Any:
        item = await queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    async def _subscribe(
        self,
        readers: dict[str, _NodeReader],
        queue: asyncio.Queue[Any],
        fixed: set[str],
        follow: bool,
    ) -> None:
        """Bring the subscriptions in line with the fixed channels and the wanted shards."""
        names = self._names
        want = set(fixed)
        if follow:
            want.update(names.updates(k) for k in self.interest.wanted)
        held = {c for reader in readers.values() for c in reader.channels}
        for reader in readers.values():
            gone = [c for c in reader.channels if c not in want]
            if gone:
                await reader.unsubscribe(gone)
        by_node: dict[str, tuple[ClusterNode, list[str]]] = {}
        for channel in sorted(want - held):
            node = self._client.get_node_from_key(channel)
            if node is None:
                raise OSError(f"no node serves {channel}")
            by_node.setdefault(node.name, (node, []))[1].append(channel)
        for name, (node, todo) in by_node.items():
            if name not in readers:
                readers[name] = _NodeReader(node, queue)
            await readers[name].subscribe(todo)
        resume_cancellation()

    def _note(self, raw: dict[str, Any], pending: set[str], fixed: set[str]) -> Message | None:
        kind = _text(raw["type"])
        if kind not in ("smessage", "ssubscribe", "sunsubscribe"):
            return None  # nothing else is sent on these connections (health checks are dropped)
        channel = _text(raw["channel"])
        names = self._names
        if kind == "smessage":
            logical = names.logical(channel)
            data = bytes(raw["data"])
            if logical == UPDATES_CHANNEL:
                self.update_messages += 1
                self.update_bytes += len(data)
            return Message(logical, data)
        if kind == "ssubscribe":
            pending.discard(channel)
            if names.logical(channel) == UPDATES_CHANNEL:
                self.interest.confirmed(_shard_of_channel(channel), True)
        elif kind == "sunsubscribe":
            is_update = names.logical(channel) == UPDATES_CHANNEL
            shard = _shard_of_channel(channel) if is_update else -1
            if not raw.get("ours") and (channel in fixed or shard in self.interest.wanted):
                raise _Moved(f"the server unsubscribed {channel} (its slot moved)")
            if is_update:
                self.interest.confirmed(shard, False)
        return None

    async def ping(self) -> bool:
        try:
            with translated("ping"):
                async with asyncio.timeout(PING_TIMEOUT):
                    return bool(await self._client.ping())
        except BusUnavailable:
            return False


class _DeafShards:
    """Every fetch tick goes to every shard, so a followed shard that stays silent while the
    others hear DEAF_AFTER ticks is deaf: its connection died without an error (a master that
    hangs, or is cut off, and is failed over while our socket still looks open). The heartbeat
    covers only the control channel's node; this covers the others."""

    def __init__(self) -> None:
        self._count = 0
        self._last: dict[int, int] = {}

    def heard(self, shard: int) -> None:
        self._count += 1
        self._last[shard] = self._count

    def check(self, followed: set[int]) -> None:
        if len(followed) < 2:
            return
        for shard in [k for k in self._last if k not in followed]:
            del self._last[shard]  # left: counted afresh if followed again
        allowed = DEAF_AFTER * len(followed)
        for shard in followed:
            last = self._last.setdefault(shard, self._count)  # followed since now
            if self._count - last > allowed:
                raise _Moved(
                    f"shard {shard} heard nothing while the others heard {DEAF_AFTER} ticks"
                )


def _shard_of_channel(channel: str) -> int:
    return int(channel[channel.rindex("{s") + 2 : -1])


# ---- snapshots, history, registry ------------------------------------------------------------


class ClusterSnapshotStore:
    def __init__(self, client: RedisCluster, names: ClusterNames, interest: ShardInterest) -> None:
        self._client = client
        self._names = names
        self._interest = interest

    def covers(self, symbol: str) -> bool:
        return self._interest.covers(symbol)

    async def put(self, items: Mapping[str, bytes]) -> None:
        groups = group_by_shard(items, self._names.shards)
        with translated("storing snapshots failed"):
            await asyncio.gather(
                *(
                    self._client.hset(
                        self._names.last_quotes_of(k), mapping={s: items[s] for s in symbols}
                    )
                    for k, symbols in groups.items()
                )
            )

    async def get(self, symbols: Sequence[str]) -> dict[str, bytes]:
        groups = group_by_shard(symbols, self._names.shards)
        with translated("reading snapshots failed"):
            replies = await asyncio.gather(
                *(self._client.hmget(self._names.last_quotes_of(k), ss) for k, ss in groups.items())
            )
        out: dict[str, bytes] = {}
        for group, values in zip(groups.values(), replies, strict=True):
            found: list[Any] = values
            out.update({s: bytes(v) for s, v in zip(group, found, strict=True) if v is not None})
        return out

    async def get_all(self) -> dict[str, bytes]:
        keys = [self._names.last_quotes_of(k) for k in range(self._names.shards)]
        with translated("reading snapshots failed"):
            replies: list[Any] = await asyncio.gather(*(self._client.hgetall(k) for k in keys))
        return {_text(k): bytes(v) for reply in replies for k, v in reply.items()}


class ClusterHistoryStore(RedisHistoryStore):
    """The single-server store, its sample script run once per shard (one slot each)."""

    def __init__(self, client: RedisCluster, names: ClusterNames) -> None:
        super().__init__(client, names)  # type: ignore[arg-type]
        self._shards = names.shards

    async def sample(self, symbols: Sequence[str], points: int) -> list[list[bytes]]:
        groups = group_by_shard(symbols, self._shards)
        parts = await asyncio.gather(
            *(super(ClusterHistoryStore, self).sample(ss, points) for ss in groups.values())
        )
        found: dict[str, list[bytes]] = {}
        for group, lines in zip(groups.values(), parts, strict=True):
            found.update(zip(group, lines, strict=True))
        return [found[s] for s in symbols]


class ClusterRegistry(RedisRegistry):
    """The single-server registry (its keys share the `{subscriptions}` slot); each report also
    tells this process's listener which shards to follow, and waits for them."""

    def __init__(
        self, client: RedisCluster, names: ClusterNames, ttl: float, interest: ShardInterest
    ) -> None:
        super().__init__(client, names, ttl)  # type: ignore[arg-type]
        self._interest = interest

    async def report(self, replica_id: str, counts: Mapping[str, int]) -> None:
        self._interest.want([s for s, n in counts.items() if n > 0])
        if not await self._interest.settle(SETTLE_TIMEOUT):
            log.warning("shard subscriptions not confirmed within %.1fs", SETTLE_TIMEOUT)
        await super().report(replica_id, counts)


# ---- the lease and its fence -----------------------------------------------------------------

# Copy a term into a shard, unless the shard has seen a newer one. KEYS: the shard's copy of the
# lease, the shard's newest term. ARGV: token, TTL (ms).
_FENCE = """
local newest = tonumber(redis.call('GET', KEYS[2]) or '0')
local token = tonumber(ARGV[1])
if token < newest then return 0 end
if token > newest then redis.call('SET', KEYS[2], ARGV[1]) end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

_UNFENCE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""

# The single-server publish script with the shard's copy of the lease as its fence and SPUBLISH.
# KEYS: the shard's lease copy, the shard's snapshot hash, then one history list per entry.
_SHARD_PUBLISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local n = tonumber(ARGV[6])
if n > 0 then redis.call('HSET', KEYS[2], unpack(ARGV, 7, 6 + n)) end
local keep = -tonumber(ARGV[4])
for i = 3, #KEYS do
  redis.call('RPUSH', KEYS[i], ARGV[4 + n + i])
  redis.call('LTRIM', KEYS[i], keep, -1)
  redis.call('PEXPIRE', KEYS[i], ARGV[5])
end
redis.call('SPUBLISH', ARGV[2], ARGV[3])
return 1
"""


class ClusterLease:
    def __init__(
        self,
        client: RedisCluster,
        names: ClusterNames,
        ttl: float,
        *,
        history_points: int = 3000,
        history_ttl: float = 21600.0,
    ) -> None:
        self._client = client
        self._names = names
        self._ttl_ms = int(ttl * 1000)
        self._history_points = history_points
        self._history_ttl_ms = max(int(history_ttl * 1000), 1)
        self._acquire = client.register_script(_ACQUIRE)
        self._release = client.register_script(_RELEASE)
        self._fence = client.register_script(_FENCE)
        self._unfence = client.register_script(_UNFENCE)
        self._publish = client.register_script(_SHARD_PUBLISH)
        # What this process's lease has published (the cost of the whole fan-out).
        self.published_messages = 0
        self.published_bytes = 0

    async def acquire(self, holder: str) -> int | None:
        names = self._names
        with translated("fetcher lease"):
            token = await self._acquire(
                keys=[names.lease, names.term], args=[holder, self._ttl_ms, _now_ms()]
            )
        if token is None:
            return None
        # Renew the term's copy in every shard; a shard that cannot be reached now refuses our
        # publishes there until it can (and its update is lost meanwhile, like any other).
        results = await asyncio.gather(
            *(
                self._fence(
                    keys=[names.shard_lease(k), names.shard_term(k)],
                    args=[_text(token), self._ttl_ms],
                )
                for k in range(names.shards)
            ),
            return_exceptions=True,
        )
        resume_cancellation()
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            log.debug("fencing %d shards failed: %s", len(failed), failed[0])
        return int(token)

    async def release(self, holder: str, token: int) -> None:
        names = self._names
        with translated("releasing the fetcher lease"):
            await self._release(keys=[names.lease], args=[holder, str(token)])
        await asyncio.gather(
            *(
                self._unfence(keys=[names.shard_lease(k)], args=[str(token)])
                for k in range(names.shards)
            ),
            return_exceptions=True,
        )
        resume_cancellation()

    async def peek(self) -> LeaseHolder | None:
        with translated("reading the fetcher lease"):
            holder, token = await self._client.hmget(self._names.lease, ["holder", "token"])
        if holder is None or token is None:
            return None
        try:
            return LeaseHolder(_text(holder), int(token))
        except ValueError:
            return LeaseHolder(_text(holder), 0)

    async def publish(
        self,
        token: int,
        snapshots: Mapping[str, bytes],
        channel: str,
        message: bytes,
        history: Mapping[str, bytes] | None = None,
    ) -> bool:
        names = self._names
        if channel != UPDATES_CHANNEL:
            raise ValueError(f"a cluster publishes fenced updates only, not on {channel}")
        parts = split_update(message, snapshots, names)
        by_shard = group_by_shard(snapshots, names.shards)
        points = group_by_shard(history or {}, names.shards)
        calls: dict[int, tuple[list[str], list[Any]]] = {}
        for shard, part in parts.items():
            keys = [names.shard_lease(shard), names.last_quotes_of(shard)]
            mine = by_shard.get(shard, [])
            args: list[Any] = [
                str(token), names.updates(shard), part, self._history_points,
                self._history_ttl_ms, 2 * len(mine),
            ]  # fmt: skip
            for symbol in mine:
                args += [symbol, snapshots[symbol]]
            for symbol in points.get(shard, ()):
                keys.append(names.history(symbol))
                args.append((history or {})[symbol])
            calls[shard] = (keys, args)
            self.published_messages += 1
            self.published_bytes += len(part)
        done = await self._run(calls)
        refused = [shard for shard, ok in done.items() if not ok]
        if refused and await self._holds(token):
            # Our term holds the lease, but these shards' copies of it lapsed (their master
            # failed over, or was unreachable at the last renewal): fence them again, and retry.
            fenced = await self._run(
                {k: ([names.shard_lease(k), names.shard_term(k)], [str(token), self._ttl_ms])
                 for k in refused},
                self._fence,
            )  # fmt: skip
            again = [k for k, ok in fenced.items() if ok]
            done.update(await self._run({k: calls[k] for k in again}))
        return all(done.values())

    async def _holds(self, token: int) -> bool:
        with translated("reading the fetcher lease"):
            held = await self._client.hget(self._names.lease, "token")
        return held is not None and _text(held) == str(token)

    async def _run(
        self, calls: Mapping[int, tuple[list[str], list[Any]]], script: Any = None
    ) -> dict[int, bool]:
        """Run one script call per shard at once: whether each returned true. Any failure
        raises BusUnavailable, once every call is over (the others' writes stand)."""
        script = script or self._publish
        results = await asyncio.gather(
            *(script(keys=keys, args=args) for keys, args in calls.values()),
            return_exceptions=True,
        )
        resume_cancellation()
        for result in results:
            if isinstance(result, REDIS_ERRORS) or closed_under_the_call(result):
                raise BusUnavailable(f"publishing quotes: {result}") from result
            if isinstance(result, BaseException):
                raise result
        return {shard: bool(r) for shard, r in zip(calls, results, strict=True)}
