"""Redis adapters: pub/sub channels, a hash of last quotes, leased subscription counts, the
fetcher lease, the providers' quota counts and the chart's recent prices.

Keys (see "Redis layout" in the README), each under the deployment's prefix
(`app.pubsub.redis_names`, the one place that names them):
- `market-data:*` channels (pub/sub).
- `quotes:last` hash: symbol -> encoded quote.
- `history:{symbol}` list: the chart's recent points of that symbol, oldest first, appended by the
  fenced publish (RPUSH), capped to the newest `history_points` (LTRIM) and expiring
  `history_ttl` after the last append (PEXPIRE). A list, not a stream or a sorted set: the only
  read is "the whole recent line, in order" (LRANGE), appends are O(1) and the cap is exact;
  a list is stored as compact listpacks, ~25 bytes a point (a stream takes ~1.5x that, a sorted
  set past 128 entries ~5.5x, see the README), and a stream would add entry ids on Redis's clock,
  not the source's, and consumer machinery nobody uses here, with a cap that is only approximate
  (`MAXLEN ~`).
- `subscriptions:replica:{id}` hash: symbol -> subscriber count on that replica, expiring with
  the replica's lease; `subscriptions:replicas` sorted set: replica id -> lease expiry (ms).
- `fetcher:lease` hash {holder, token} with a TTL: who fetches now (holder is
  `{replica id}:{process nonce}`, so two processes given the same REPLICA_ID never both hold it);
  `fetcher:term`: the last token.
- `subscriptions:active` set and `subscriptions:count:{symbol}`: the cluster-wide view, rewritten
  by `reconcile` from the live replicas only, so a SIGKILLed replica's counts vanish by themselves.
- `quota:{provider}:*`: the providers' quota counts, in `app.feeds.ledger_redis`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import AsyncGenerator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException, RedisError

from app.pubsub.base import BusUnavailable, LeaseHolder, Message, StateCallback
from app.pubsub.redis_names import RedisNames

log = logging.getLogger(__name__)

BACKOFF_START = 0.1
BACKOFF_CAP = 5.0
PING_TIMEOUT = 0.5
# A page render waits at most this long for the chart's history before drawing without it.
HISTORY_READ_TIMEOUT = 1.0


# What the Redis adapters translate at their boundary: the client's errors (a cluster client
# that reaches no node raises RedisClusterException, which is not a RedisError) and sockets'.
REDIS_ERRORS = (RedisError, RedisClusterException, OSError)


def resume_cancellation() -> None:
    """Raise the CancelledError that redis-py may have swallowed.

    redis-py wraps every socket write in `asyncio.wait_for`, which on Python 3.11 returns the
    result and drops a cancellation that lands just as the write completes (fixed in 3.12). The
    task then runs on with `cancelling()` still set: a loop calling Redis outlived its
    cancellation at shutdown, so a replica that could not bind its port never exited. Every
    adapter call checks this on the way out, so no loop above depends on the interpreter.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def closed_under_the_call(exc: BaseException) -> bool:
    """A command whose connection redis-py itself closed while the command used it.

    The cluster client closes every connection, those in use too, on CLUSTERDOWN, an uncovered
    slot or a run of MOVED (a cluster forming, a failover). A command of another task on one of
    them then fails inside redis-py with RuntimeError (uvloop: "the handler is closed") or
    AttributeError (its writer is gone), not ConnectionError, from redis-py's connection module.
    Raised anywhere else (or as a subclass: NotImplementedError), those two stay what they are:
    bugs."""
    if type(exc) not in (RuntimeError, AttributeError):  # not their subclasses (RecursionError)
        return False
    deepest = ""  # the innermost frame of redis-py's own: where the connection was used
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.startswith(_REDIS_PY):
            deepest = tb.tb_frame.f_code.co_filename
        tb = tb.tb_next
    return deepest == _REDIS_CONNECTION


_REDIS_PY = os.path.dirname(redis.__file__) + os.sep
_REDIS_CONNECTION = os.path.join(_REDIS_PY, "asyncio", "connection.py")


@contextmanager
def translated(what: str) -> Iterator[None]:
    """The adapter boundary: Redis and socket errors (and a connection closed under the call,
    `closed_under_the_call`) become `BusUnavailable("what: error")`, and a cancellation redis-py
    swallowed is raised again (`resume_cancellation`)."""
    try:
        yield
    except REDIS_ERRORS as exc:
        resume_cancellation()
        raise BusUnavailable(f"{what}: {str(exc) or 'timed out'}") from exc  # an empty TimeoutError
    except (RuntimeError, AttributeError) as exc:
        if not closed_under_the_call(exc):
            raise
        resume_cancellation()
        raise BusUnavailable(f"{what}: the connection was closed under the call ({exc})") from exc
    resume_cancellation()


def connect(url: str, client_name: str, **options: Any) -> aioredis.Redis:
    """A client that fails fast (no silent retries): our loops own the retry policy.

    `options` go to redis-py as they are (TLS settings for rediss:// URLs)."""
    client: aioredis.Redis = aioredis.Redis.from_url(
        url,
        **options,
        socket_connect_timeout=2.0,
        socket_timeout=5.0,
        health_check_interval=5,
        retry=Retry(NoBackoff(), 0),
        client_name=client_name,
    )
    return client


class RedisBus:
    def __init__(self, client: aioredis.Redis, names: RedisNames) -> None:
        self._client = client
        self._names = names

    async def publish(self, channel: str, data: bytes) -> None:
        name = self._names.channel(channel)
        with translated(f"publish to {name} failed"):
            await self._client.publish(name, data)

    async def listen(
        self, channels: Sequence[str], on_state: StateCallback | None = None
    ) -> AsyncGenerator[Message, None]:
        delay = BACKOFF_START
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            connected = False
            try:
                await pubsub.subscribe(*(self._names.channel(c) for c in channels))
                resume_cancellation()
                connected = True
                delay = BACKOFF_START
                if on_state is not None:
                    on_state(True)
                while True:
                    raw = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    resume_cancellation()
                    if raw is not None and raw["type"] == "message":
                        channel = self._names.logical(_text(raw["channel"]))
                        yield Message(channel, bytes(raw["data"]))
            except REDIS_ERRORS as exc:
                if connected and on_state is not None:
                    on_state(False)
                log.warning("redis listener lost (%s); retrying in %.1fs", exc, delay)
            finally:
                await _close_quietly(pubsub)
            resume_cancellation()
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, BACKOFF_CAP)

    async def ping(self) -> bool:
        try:
            with translated("ping"):
                async with asyncio.timeout(PING_TIMEOUT):
                    return bool(await self._client.ping())
        except BusUnavailable:
            return False


class RedisSnapshotStore:
    def __init__(self, client: aioredis.Redis, names: RedisNames) -> None:
        self._client = client
        self._key = names.last_quotes

    async def put(self, items: Mapping[str, bytes]) -> None:
        if not items:
            return
        mapping: dict[Any, Any] = dict(items)  # redis-py's stubs want a wider key type
        with translated("storing snapshots failed"):
            await self._client.hset(self._key, mapping=mapping)

    async def get(self, symbols: Sequence[str]) -> dict[str, bytes]:
        if not symbols:
            return {}
        with translated("reading snapshots failed"):
            values: list[Any] = await self._client.hmget(self._key, list(symbols))
        return {s: bytes(v) for s, v in zip(symbols, values, strict=True) if v is not None}

    async def get_all(self) -> dict[str, bytes]:
        with translated("reading snapshots failed"):
            raw: dict[Any, Any] = await self._client.hgetall(self._key)
        return {_text(k): bytes(v) for k, v in raw.items()}

    def covers(self, symbol: str) -> bool:
        return True


# Renew our own lease, or take a free one with a token above every earlier term's.
_ACQUIRE = """
local holder = redis.call('HGET', KEYS[1], 'holder')
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return redis.call('HGET', KEYS[1], 'token')
end
if holder then return false end
local token = tonumber(ARGV[3])
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if token <= last then token = last + 1 end
token = string.format('%.0f', token)
redis.call('SET', KEYS[2], token)
redis.call('HSET', KEYS[1], 'holder', ARGV[1], 'token', token)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return token
"""

_RELEASE = """
if redis.call('HGET', KEYS[1], 'token') == ARGV[2]
   and redis.call('HGET', KEYS[1], 'holder') == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return 0
"""

# The fence: store, append the history and publish only while the caller's token still holds
# the lease. KEYS: the lease, the last-quotes hash, then one history list per entry.
# ARGV: token, channel, message, history cap, history TTL (ms), n = number of snapshot
# arguments, the n snapshot arguments (symbol, quote, ...), then one entry per history list.
_PUBLISH = """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
local n = tonumber(ARGV[6])
if n > 0 then redis.call('HSET', KEYS[2], unpack(ARGV, 7, 6 + n)) end
local keep = -tonumber(ARGV[4])
for i = 3, #KEYS do
  redis.call('RPUSH', KEYS[i], ARGV[4 + n + i])
  redis.call('LTRIM', KEYS[i], keep, -1)
  redis.call('PEXPIRE', KEYS[i], ARGV[5])
end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
"""


# A sample of each history list (sparklines): at most ARGV[1] entries per list, evenly spread by
# position, its first and last included, for every list in KEYS, in one round trip. LINDEX skips
# whole quicklist nodes but steps entry by entry inside one, so a page's sample costs Redis
# points x lists seeks of up to a node's length each (app.history caches samples for a second
# per process, so a reload flood does not repeat them); only the sampled entries cross the
# network. Each list comes back as one string of `<length>:<entry>` items (entries are opaque
# bytes): parsing 50 strings instead of 3,000 nested replies halves a 50-row page's read.
_SAMPLE = """
local points = tonumber(ARGV[1])
local out = {}
for k = 1, #KEYS do
  local n = redis.call('LLEN', KEYS[k])
  local picked = {}
  if n <= points then
    picked = redis.call('LRANGE', KEYS[k], 0, -1)
  else
    for i = 0, points - 1 do
      picked[i + 1] = redis.call('LINDEX', KEYS[k], math.floor(i * (n - 1) / (points - 1)))
    end
  end
  for i = 1, #picked do picked[i] = #picked[i] .. ':' .. picked[i] end
  out[k] = table.concat(picked)
end
return out
"""


def _unpack(packed: bytes) -> list[bytes]:
    """`<length>:<entry>` items (the sample script's reply for one list) as entries."""
    entries: list[bytes] = []
    at = 0
    while at < len(packed):
        colon = packed.index(b":", at)
        end = colon + 1 + int(packed[at:colon])
        entries.append(packed[colon + 1 : end])
        at = end
    return entries


class RedisHistoryStore:
    def __init__(self, client: aioredis.Redis, names: RedisNames) -> None:
        self._client = client
        self._names = names
        self._sample = client.register_script(_SAMPLE)

    async def read(self, symbol: str) -> list[bytes]:
        with translated("reading the price history failed"):
            async with asyncio.timeout(HISTORY_READ_TIMEOUT):
                values: list[Any] = await self._client.lrange(self._names.history(symbol), 0, -1)
        return [bytes(v) for v in values]

    async def sample(self, symbols: Sequence[str], points: int) -> list[list[bytes]]:
        if points < 2:
            raise ValueError(f"a sample needs at least 2 points, not {points}")
        if not symbols:
            return []
        keys = [self._names.history(s) for s in symbols]
        with translated("sampling the price history failed"):
            async with asyncio.timeout(HISTORY_READ_TIMEOUT):
                lists: list[Any] = await self._sample(keys=keys, args=[points])
        return [_unpack(bytes(packed)) for packed in lists]


class RedisLease:
    def __init__(
        self,
        client: aioredis.Redis,
        names: RedisNames,
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
        self._publish = client.register_script(_PUBLISH)

    async def acquire(self, holder: str) -> int | None:
        with translated("fetcher lease"):
            token = await self._acquire(
                keys=[self._names.lease, self._names.term], args=[holder, self._ttl_ms, _now_ms()]
            )
        return None if token is None else int(token)

    async def release(self, holder: str, token: int) -> None:
        with translated("releasing the fetcher lease"):
            await self._release(keys=[self._names.lease], args=[holder, str(token)])

    async def peek(self) -> LeaseHolder | None:
        with translated("reading the fetcher lease"):
            holder, token = await self._client.hmget(self._names.lease, ["holder", "token"])
        if holder is None or token is None:
            return None
        try:
            return LeaseHolder(_text(holder), int(token))
        except ValueError:  # not ours to judge: whoever wrote it holds it
            return LeaseHolder(_text(holder), 0)

    async def publish(
        self,
        token: int,
        snapshots: Mapping[str, bytes],
        channel: str,
        message: bytes,
        history: Mapping[str, bytes] | None = None,
    ) -> bool:
        keys = [self._names.lease, self._names.last_quotes]
        args: list[Any] = [
            str(token), self._names.channel(channel), message, self._history_points,
            self._history_ttl_ms, 2 * len(snapshots),
        ]  # fmt: skip
        for symbol, data in snapshots.items():
            args += [symbol, data]
        for symbol, entry in (history or {}).items():
            keys.append(self._names.history(symbol))
            args.append(entry)
        with translated("publishing quotes"):
            done = await self._publish(keys=keys, args=args)
        return bool(done)


# Replace one replica's counts and renew its lease, timed by the Redis server's clock (replicas'
# clocks may disagree; the server's is the one every lease is compared against).
_REPORT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('DEL', KEYS[1])
if #ARGV > 2 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 3))
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
return 0
"""


class RedisRegistry:
    def __init__(self, client: aioredis.Redis, names: RedisNames, ttl: float) -> None:
        self._client = client
        self._names = names
        self._ttl_ms = int(ttl * 1000)
        self._report = client.register_script(_REPORT)

    async def report(self, replica_id: str, counts: Mapping[str, int]) -> None:
        args: list[Any] = [replica_id, self._ttl_ms]
        for symbol, n in counts.items():
            if n > 0:
                args += [symbol, n]
        with translated("reporting subscriptions failed"):
            keys = [self._names.replica(replica_id), self._names.replicas]
            await self._report(keys=keys, args=args)

    async def withdraw(self, replica_id: str) -> None:
        with translated("withdrawing subscriptions failed"):
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.delete(self._names.replica(replica_id))
                pipe.zrem(self._names.replicas, replica_id)
                await pipe.execute()

    async def reconcile(self) -> dict[str, int]:
        with translated("reconciling subscriptions failed"):
            seconds, micros = await self._client.time()  # the server's clock, as in _REPORT
            now = int(seconds) * 1000 + int(micros) // 1000
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.zrangebyscore(self._names.replicas, now, "+inf")
                pipe.zremrangebyscore(self._names.replicas, "-inf", f"({now}")
                pipe.smembers(self._names.active)
                live_ids, _, active = await pipe.execute()
            totals: dict[str, int] = {}
            if live_ids:
                async with self._client.pipeline(transaction=False) as pipe:
                    for replica_id in live_ids:
                        pipe.hgetall(self._names.replica(_text(replica_id)))
                    for counts in await pipe.execute():
                        for symbol, n in counts.items():
                            name = _text(symbol)
                            totals[name] = totals.get(name, 0) + int(n)
            await self._rewrite_view(totals, {_text(s) for s in active})
        return totals

    async def _rewrite_view(self, totals: dict[str, int], previous: set[str]) -> None:
        # The view outlives its writer by a few leases only, so it heals even if every replica dies.
        view_ttl = self._ttl_ms * 3
        gone = previous - totals.keys()
        async with self._client.pipeline(transaction=True) as pipe:
            if gone:
                pipe.srem(self._names.active, *gone)
                pipe.delete(*(self._names.count(s) for s in gone))
            if totals:
                pipe.sadd(self._names.active, *totals)
                pipe.pexpire(self._names.active, view_ttl)
                for symbol, n in totals.items():
                    pipe.set(self._names.count(symbol), n, px=view_ttl)
            await pipe.execute()


def _now_ms() -> int:
    return int(time.time() * 1000)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def _close_quietly(pubsub: Any) -> None:
    try:
        await pubsub.aclose()
    except REDIS_ERRORS as exc:
        log.debug("closing pubsub: %s", exc)
