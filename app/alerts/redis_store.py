"""Redis alert store (see app.alerts.store for the contract).

Keys, under the deployment's prefix (README "Redis layout"):
- `alerts:all` hash: alert id -> encoded alert (app.alerts.model);
- `alerts:owner:{owner}` set of that owner's alert ids (its size is the per-owner bound);
- `alerts:symbol:{symbol}` set of alert ids on that symbol; `alerts:symbols` set of the symbols
  with any alert (what the evaluator looks at: only these symbols cost it anything);
- `alerts:inbox:{owner}` list of fired messages no tab has shown yet (capped, expiring);
- `alerts:seq`: the last fired message's number; `alerts:secret`: the identity cookie's key when
  SESSION_SECRET is not set (SET NX, so every replica agrees on the first one written).
Adding, removing and firing are Lua scripts, so the indexes never disagree with the hash.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from app.alerts.model import Alert, decode_alert
from app.alerts.store import ALERTS_CHANNEL, INBOX_MAX, INBOX_TTL, MAX_ALERTS, Added, Change
from app.pubsub.redis import translated
from app.pubsub.redis_names import RedisNames

log = logging.getLogger(__name__)

_ADD = """
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
if redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[5]) then return -1 end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[4])
return 1
"""

_REMOVE = """
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
if redis.call('SCARD', KEYS[3]) == 0 then redis.call('SREM', KEYS[4], ARGV[2]) end
return 1
"""

# The fence: change alerts only while the caller's token holds the fetcher lease, and each only
# if it is still stored as the caller read it. KEYS: the lease, the alerts hash, the sequence,
# then one inbox per change. ARGV: token, channel, inbox cap, inbox TTL (ms), n, then per
# change: id, old, new, message prefix ('' for a re-arm), message suffix.
_APPLY = """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return false end
local fired = {}
for i = 1, tonumber(ARGV[5]) do
  local b = 5 + (i - 1) * 5
  if redis.call('HGET', KEYS[2], ARGV[b + 1]) == ARGV[b + 2] then
    redis.call('HSET', KEYS[2], ARGV[b + 1], ARGV[b + 3])
    if ARGV[b + 4] ~= '' then
      local message = ARGV[b + 4] .. redis.call('INCR', KEYS[3]) .. ARGV[b + 5]
      local inbox = KEYS[3 + i]
      redis.call('RPUSH', inbox, message)
      redis.call('LTRIM', inbox, -tonumber(ARGV[3]), -1)
      redis.call('PEXPIRE', inbox, ARGV[4])
      redis.call('PUBLISH', ARGV[2], message)
      fired[#fired + 1] = message
    end
  end
end
return fired
"""


class RedisAlertStore:
    def __init__(
        self, client: aioredis.Redis, prefix: str = "", *, max_alerts: int = MAX_ALERTS
    ) -> None:
        self._client = client
        self._max_alerts = max_alerts
        self._names = RedisNames(prefix)
        self._p = prefix + "alerts:"
        self._add = client.register_script(_ADD)
        self._remove = client.register_script(_REMOVE)
        self._apply = client.register_script(_APPLY)

    @property
    def _all(self) -> str:
        return self._p + "all"

    @property
    def _symbols(self) -> str:
        return self._p + "symbols"

    def _owner(self, owner: str) -> str:
        return f"{self._p}owner:{owner}"

    def _symbol(self, symbol: str) -> str:
        return f"{self._p}symbol:{symbol}"

    def _inbox(self, owner: str) -> str:
        return f"{self._p}inbox:{owner}"

    async def add(self, alert: Alert, limit: int) -> Added:
        keys = [self._owner(alert.owner), self._all, self._symbol(alert.symbol), self._symbols]
        with translated("storing the alert failed"):
            args: list[Any] = [alert.id, alert.encode(), limit, alert.symbol, self._max_alerts]
            done = int(await self._add(keys=keys, args=args))
        return {1: Added.ADDED, 0: Added.OWNER_FULL}.get(done, Added.STORE_FULL)

    async def remove(self, owner: str, alert_id: str) -> bool:
        with translated("removing the alert failed"):
            raw = await self._client.hget(self._all, alert_id)
            if raw is None:
                return False
            alert = _decoded(raw)
            if alert is None or alert.owner != owner:
                return False
            keys = [self._owner(owner), self._all, self._symbol(alert.symbol), self._symbols]
            done = await self._remove(keys=keys, args=[alert_id, alert.symbol])
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
                    pipe.smembers(self._symbol(symbol))
                found = await pipe.execute()
            ids = sorted({_text(i) for members in found for i in members})
            values: list[Any] = await self._client.hmget(self._all, ids) if ids else []
        return [(a, bytes(v)) for v in values if v is not None and (a := _decoded(v)) is not None]

    async def apply(self, token: int, changes: Sequence[Change]) -> list[bytes] | None:
        keys = [self._names.lease, self._all, self._p + "seq"]
        args: list[Any] = [
            str(token), self._names.channel(ALERTS_CHANNEL), INBOX_MAX, int(INBOX_TTL * 1000),
            len(changes),
        ]  # fmt: skip
        for change in changes:
            keys.append(self._inbox(change.new.owner))
            prefix, suffix = change.fire or (b"", b"")
            args += [change.new.id, change.old, change.new.encode(), prefix, suffix]
        with translated("firing alerts failed"):
            fired = await self._apply(keys=keys, args=args)
        return None if fired is None else [bytes(m) for m in fired]

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
