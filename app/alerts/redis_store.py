"""Redis alert store (see app.alerts.store for the contract).

Keys, under the deployment's prefix (README "Redis layout"):
- `alerts:all` hash: alert id -> encoded alert (app.alerts.model);
- `alerts:owner:{owner}` set of that owner's alert ids (its size is the per-owner bound);
- `alerts:rise:{symbol}` / `alerts:fall:{symbol}` sorted sets of that symbol's alert ids, scored
  by the price at which they change (app.alerts.store.due_at): what the evaluator reads, only
  the part the price reached (ZRANGEBYSCORE with a LIMIT);
- `alerts:symbols` set of the symbols with any alert (fetched for them; its size is bounded);
- `alerts:seen` sorted set: anonymous owner -> when last seen (ms), for their alerts' expiry;
- `alerts:rate:{address}` hash: the per-address token bucket of stored alerts (all replicas);
- `alerts:inbox:{owner}` list of fired messages no tab has shown yet (capped, expiring);
- `alerts:layout`: the layout version `reindex` brought stored alerts to;
- `alerts:seq`: the last fired message's number; `alerts:secret`: the identity cookie's key when
  SESSION_SECRET is not set (SET NX, so every replica agrees on the first one written).
Adding, removing, firing and expiring are Lua scripts, so the indexes never disagree with the
hash.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import redis.asyncio as aioredis

from app.alerts.model import Alert, decode_alert
from app.alerts.store import (
    ALERTS_CHANNEL,
    EXPIRE_BATCH,
    INBOX_MAX,
    INBOX_TTL,
    MAX_ALERTS,
    Added,
    Applied,
    Change,
    Due,
    due_at,
)
from app.pubsub.redis import translated
from app.pubsub.redis_names import RedisNames

log = logging.getLogger(__name__)

# The key layout `reindex` brings stored alerts to (kept in `alerts:layout`).
LAYOUT = "2"

# KEYS: owner, all, symbols, the alert's side of the index, seen. ARGV: id, encoded, per-owner
# limit, symbol, max alerts, score, max symbols (0: none), now (ms), anonymous ('1' or '0').
_ADD = """
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
if redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[5]) then return -1 end
local cap = tonumber(ARGV[7])
if cap > 0 and redis.call('SISMEMBER', KEYS[3], ARGV[4]) == 0
    and redis.call('SCARD', KEYS[3]) >= cap then return -2 end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[4], ARGV[6], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[4])
if ARGV[9] == '1' then redis.call('ZADD', KEYS[5], ARGV[8], ARGV[10]) end
return 1
"""

# KEYS: owner, all, symbols, rise, fall, seen. ARGV: id, symbol, owner.
_REMOVE = """
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
if redis.call('ZCARD', KEYS[4]) + redis.call('ZCARD', KEYS[5]) == 0 then
  redis.call('SREM', KEYS[3], ARGV[2])
end
if redis.call('SCARD', KEYS[1]) == 0 then redis.call('ZREM', KEYS[6], ARGV[3]) end
return 1
"""

# KEYS: all, then per symbol its rise and fall. ARGV: limit, then per symbol its price. Per
# symbol: {1 if a side filled the limit, the stored alerts}. An id with no alert (never written
# so by the scripts here) is dropped from the index rather than read at every price.
_DUE = """
local limit = tonumber(ARGV[1])
local out = {}
for i = 1, #ARGV - 1 do
  local price = ARGV[i + 1]
  local rise, fall = KEYS[2 * i], KEYS[2 * i + 1]
  local up = redis.call('ZRANGEBYSCORE', rise, '-inf', price, 'LIMIT', 0, limit)
  local down = redis.call('ZRANGEBYSCORE', fall, price, '+inf', 'LIMIT', 0, limit)
  local more = 0
  if #up >= limit or #down >= limit then more = 1 end
  local values = {}
  for _, ids in ipairs({up, down}) do
    if #ids > 0 then
      local got = redis.call('HMGET', KEYS[1], unpack(ids))
      for j = 1, #ids do
        if got[j] then
          values[#values + 1] = got[j]
        else
          redis.call('ZREM', rise, ids[j])
          redis.call('ZREM', fall, ids[j])
        end
      end
    end
  end
  out[i] = {more, values}
end
return out
"""

# The fence: change alerts only while the caller's token holds the fetcher lease, and each only
# if it is still stored as the caller read it. KEYS: the lease, the alerts hash, the sequence,
# then per change: the owner's inbox, the symbol's rise and fall. ARGV: token, channel, inbox
# cap, inbox TTL (ms), n, then per change: id, old, new, message prefix ('' for a re-arm),
# message suffix, '1' if it goes to `rise` (else `fall`), its score.
_APPLY = """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return false end
local fired = {}
local rearmed = 0
for i = 1, tonumber(ARGV[5]) do
  local b = 5 + (i - 1) * 7
  local k = 3 + (i - 1) * 3
  local id = ARGV[b + 1]
  if redis.call('HGET', KEYS[2], id) == ARGV[b + 2] then
    redis.call('HSET', KEYS[2], id, ARGV[b + 3])
    redis.call('ZREM', KEYS[k + 2], id)
    redis.call('ZREM', KEYS[k + 3], id)
    if ARGV[b + 6] == '1' then
      redis.call('ZADD', KEYS[k + 2], ARGV[b + 7], id)
    else
      redis.call('ZADD', KEYS[k + 3], ARGV[b + 7], id)
    end
    if ARGV[b + 4] ~= '' then
      local message = ARGV[b + 4] .. redis.call('INCR', KEYS[3]) .. ARGV[b + 5]
      local inbox = KEYS[k + 1]
      redis.call('RPUSH', inbox, message)
      redis.call('LTRIM', inbox, -tonumber(ARGV[3]), -1)
      redis.call('PEXPIRE', inbox, ARGV[4])
      redis.call('PUBLISH', ARGV[2], message)
      fired[#fired + 1] = message
    else
      rearmed = rearmed + 1
    end
  end
end
return {fired, rearmed}
"""

# One idle anonymous owner's alerts and inbox, unless seen since. KEYS: seen, owner, all,
# symbols, inbox, then per alert its symbol's rise and fall. ARGV: owner, before (ms), then per
# alert: id, symbol.
_FORGET = """
local at = redis.call('ZSCORE', KEYS[1], ARGV[1])
if at and tonumber(at) >= tonumber(ARGV[2]) then return 0 end
for i = 3, #ARGV, 2 do
  local id, symbol = ARGV[i], ARGV[i + 1]
  local rise, fall = KEYS[3 + i], KEYS[4 + i]
  redis.call('HDEL', KEYS[3], id)
  redis.call('SREM', KEYS[2], id)
  redis.call('ZREM', rise, id)
  redis.call('ZREM', fall, id)
  if redis.call('ZCARD', rise) + redis.call('ZCARD', fall) == 0 then
    redis.call('SREM', KEYS[4], symbol)
  end
end
if redis.call('SCARD', KEYS[2]) > 0 then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[5])
return 1
"""

# A token bucket shared by every replica, on Redis's clock. KEYS: the bucket. ARGV: tokens per
# second, burst, TTL (ms). The seconds to wait (0: taken), as a string.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local b = redis.call('HMGET', KEYS[1], 't', 's')
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local tokens = tonumber(b[1]) or burst
local stamp = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - stamp) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 's', tostring(now))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return tostring(wait)
"""

_REFUND = """
local t = tonumber(redis.call('HGET', KEYS[1], 't'))
if t then redis.call('HSET', KEYS[1], 't', tostring(math.min(tonumber(ARGV[1]), t + 1))) end
return 1
"""


class RedisAlertStore:
    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str = "",
        *,
        max_alerts: int = MAX_ALERTS,
        rate: tuple[float, float] = (10, 20),
    ) -> None:
        self._client = client
        self._max_alerts = max_alerts
        self._names = RedisNames(prefix)
        self._p = prefix + "alerts:"
        self._rate = rate  # alerts stored per address: per minute, burst
        self._add = client.register_script(_ADD)
        self._remove = client.register_script(_REMOVE)
        self._due = client.register_script(_DUE)
        self._apply = client.register_script(_APPLY)
        self._forget = client.register_script(_FORGET)
        self._take = client.register_script(_TAKE)
        self._refund = client.register_script(_REFUND)

    @property
    def _all(self) -> str:
        return self._p + "all"

    @property
    def _symbols(self) -> str:
        return self._p + "symbols"

    @property
    def _seen(self) -> str:
        return self._p + "seen"

    def _owner(self, owner: str) -> str:
        return f"{self._p}owner:{owner}"

    def _side(self, symbol: str, rises: bool) -> str:
        return f"{self._p}{'rise' if rises else 'fall'}:{symbol}"

    def _inbox(self, owner: str) -> str:
        return f"{self._p}inbox:{owner}"

    async def add(
        self, alert: Alert, limit: int, *, max_symbols: int = 0, now_ms: int = 0
    ) -> Added:
        rises, score = due_at(alert, Decimal(0))
        keys = [
            self._owner(alert.owner), self._all, self._symbols, self._side(alert.symbol, rises),
            self._seen,
        ]  # fmt: skip
        args: list[Any] = [
            alert.id, alert.encode(), limit, alert.symbol, self._max_alerts, str(score),
            max_symbols, now_ms, "1" if alert.owner.startswith("anon:") else "0", alert.owner,
        ]  # fmt: skip
        with translated("storing the alert failed"):
            done = int(await self._add(keys=keys, args=args))
        return {1: Added.ADDED, 0: Added.OWNER_FULL, -2: Added.SYMBOLS_FULL}.get(
            done, Added.STORE_FULL
        )

    async def remove(self, owner: str, alert_id: str) -> bool:
        with translated("removing the alert failed"):
            raw = await self._client.hget(self._all, alert_id)
            if raw is None:
                return False
            alert = _decoded(raw)
            if alert is None or alert.owner != owner:
                return False
            symbol = alert.symbol
            keys = [
                self._owner(owner), self._all, self._symbols, self._side(symbol, True),
                self._side(symbol, False), self._seen,
            ]  # fmt: skip
            done = await self._remove(keys=keys, args=[alert_id, symbol, owner])
        return bool(done)

    async def owned(self, owner: str) -> list[Alert]:
        with translated("reading alerts failed"):
            ids = sorted(await self._client.smembers(self._owner(owner)))
            values: list[Any] = await self._client.hmget(self._all, ids) if ids else []
        alerts = [a for v in values if v is not None and (a := _decoded(v)) is not None]
        return sorted(alerts, key=lambda a: (a.created_at, a.id))

    async def symbols(self) -> set[str]:
        with translated("reading alert symbols failed"):
            members = await self._client.smembers(self._symbols)
        return {_text(m) for m in members}

    async def for_symbols(self, symbols: Sequence[str]) -> list[tuple[Alert, bytes]]:
        if not symbols:
            return []
        with translated("reading alerts failed"):
            async with self._client.pipeline(transaction=False) as pipe:
                for symbol in symbols:
                    pipe.zrange(self._side(symbol, True), 0, -1)
                    pipe.zrange(self._side(symbol, False), 0, -1)
                found = await pipe.execute()
            ids = sorted({_text(i) for members in found for i in members})
            values: list[Any] = await self._client.hmget(self._all, ids) if ids else []
        return [(a, bytes(v)) for v in values if v is not None and (a := _decoded(v)) is not None]

    async def due(self, prices: Mapping[str, Decimal], limit: int) -> Due:
        found = Due()
        if not prices:
            return found
        symbols = list(prices)
        keys = [self._all]
        for symbol in symbols:
            keys += [self._side(symbol, True), self._side(symbol, False)]
        args: list[Any] = [limit, *(str(prices[s]) for s in symbols)]
        with translated("reading due alerts failed"):
            answer = await self._due(keys=keys, args=args)
        for symbol, (more, values) in zip(symbols, answer, strict=True):
            if int(more):
                found.more.add(symbol)
            found.alerts += [(a, bytes(v)) for v in values if (a := _decoded(v)) is not None]
        return found

    async def apply(self, token: int, changes: Sequence[Change]) -> Applied | None:
        keys = [self._names.lease, self._all, self._p + "seq"]
        args: list[Any] = [
            str(token), self._names.channel(ALERTS_CHANNEL), INBOX_MAX, int(INBOX_TTL * 1000),
            len(changes),
        ]  # fmt: skip
        for change in changes:
            new = change.new
            keys += [self._inbox(new.owner), self._side(new.symbol, True)]
            keys.append(self._side(new.symbol, False))
            prefix, suffix = change.fire or (b"", b"")
            rises, score = change.due_at()
            args += [new.id, change.old, new.encode(), prefix, suffix, int(rises), str(score)]
        with translated("firing alerts failed"):
            answer = await self._apply(keys=keys, args=args)
        if answer is None:
            return None
        fired, rearmed = answer
        return Applied([bytes(m) for m in fired], int(rearmed))

    async def touch(self, owners: Sequence[str], now_ms: int) -> None:
        anonymous = [o for o in owners if o.startswith("anon:")]
        if not anonymous:
            return
        with translated("noting an alert owner's visit failed"):
            await self._client.zadd(self._seen, dict.fromkeys(anonymous, now_ms))

    async def expire(self, before_ms: int) -> int:
        with translated("expiring idle alerts failed"):
            idle: list[Any] = await self._client.zrangebyscore(
                self._seen, "-inf", f"({before_ms}", start=0, num=EXPIRE_BATCH
            )
            done = 0
            for raw in idle:
                owner = _text(raw)
                ids = sorted(_text(i) for i in await self._client.smembers(self._owner(owner)))
                values: list[Any] = await self._client.hmget(self._all, ids) if ids else []
                keys = [self._seen, self._owner(owner), self._all, self._symbols]
                keys.append(self._inbox(owner))
                args: list[Any] = [owner, before_ms]
                for alert_id, value in zip(ids, values, strict=True):
                    alert = None if value is None else _decoded(value)
                    symbol = "" if alert is None else alert.symbol
                    keys += [self._side(symbol, True), self._side(symbol, False)]
                    args += [alert_id, symbol]
                done += int(await self._forget(keys=keys, args=args))
        return done

    async def reindex(self, band_pct: Decimal, now_ms: int) -> int:
        """Once per deployment (`alerts:layout` says which): index alerts stored before the
        price index existed, and start their anonymous owners' idle clocks now. Idempotent, so
        replicas racing to do it agree. How many alerts it indexed."""
        marker = self._p + "layout"
        done = 0
        with translated("indexing stored alerts failed"):
            if await self._client.get(marker) == LAYOUT.encode():
                return 0
            cursor = 0
            while True:
                reply: Any = await self._client.hscan(self._all, cursor, count=500)
                cursor, found = reply
                alerts = [a for v in found.values() if (a := _decoded(v)) is not None]
                async with self._client.pipeline(transaction=False) as pipe:
                    for alert in alerts:
                        rises, score = due_at(alert, band_pct)
                        pipe.zadd(self._side(alert.symbol, rises), {alert.id: str(score)}, nx=True)
                        pipe.delete(f"{self._p}symbol:{alert.symbol}")  # the old index
                        if alert.owner.startswith("anon:"):
                            pipe.zadd(self._seen, {alert.owner: now_ms}, nx=True)
                    await pipe.execute()
                done += len(alerts)
                if not cursor:
                    break
            await self._client.set(marker, LAYOUT)
        if done:
            log.info("indexed %d stored alerts by price (layout %s)", done, LAYOUT)
        return done

    async def inbox(self, owner: str) -> list[bytes]:
        with translated("reading the alert inbox failed"):
            values: list[Any] = await self._client.lrange(self._inbox(owner), 0, -1)
        return [bytes(v) for v in values]

    async def seen(self, owner: str, messages: Sequence[bytes]) -> None:
        if not messages:
            return
        with translated("updating the alert inbox failed"):
            async with self._client.pipeline(transaction=False) as pipe:
                for message in messages:
                    pipe.lrem(self._inbox(owner), 1, message)  # type: ignore[arg-type]
                await pipe.execute()

    async def shared_secret(self) -> bytes:
        key = self._p + "secret"
        with translated("reading the alert identity key failed"):
            await self._client.set(key, os.urandom(32).hex(), nx=True)
            value = await self._client.get(key)
        if value is None:  # removed between the two commands: one more round
            return await self.shared_secret()
        return bytes.fromhex(_text(value))

    async def take(self, address: str) -> float:
        per_minute, burst = self._rate
        refill_ms = max(60_000, int(burst / per_minute * 60_000))
        with translated("checking the alert rate failed"):
            wait = await self._take(
                keys=[self._p + "rate:" + address], args=[per_minute / 60, burst, refill_ms]
            )
        return float(wait)

    async def refund(self, address: str) -> None:
        with translated("checking the alert rate failed"):
            await self._refund(keys=[self._p + "rate:" + address], args=[self._rate[1]])


def _decoded(value: bytes | str) -> Alert | None:
    """A stored alert, or None (logged) if what is stored is not one: one bad entry must not
    stop the evaluation of every other alert."""
    try:
        return decode_alert(value)
    except ValueError as exc:
        log.warning("skipping a malformed stored alert: %s", exc)
        return None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
