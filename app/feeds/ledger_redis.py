"""The Redis adapter of the providers' quota ledger (`QuotaLedger`, see app/feeds/ledger.py).

Keys (see "Redis layout" in the README): `quota:{provider}:minute:{n}` / `quota:{provider}:day:{n}`
count the credits spent in wall-clock minute `n` / UTC day `n`, kept until a minute past the
window's end; `quota:{provider}:paused` / `quota:{provider}:disabled` hold until when (epoch ms)
the provider refused for its minute limit / its daily quota is gone, expiring then (all under the
deployment's prefix, `app.pubsub.redis_names`). Every change is one Lua script, so concurrent
fetchers never overspend.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from app.feeds.ledger import DAY, MINUTE, QuotaUsage, quota_windows
from app.pubsub.redis import translated
from app.pubsub.redis_names import RedisNames

# A quota count outlives its window by this much (seconds), for fetchers whose clocks lag.
QUOTA_KEEP = 60.0


# KEYS: minute count, day count, paused until, disabled until.
# ARGV: credits, per minute, per day (0: no limit), now (ms), minute TTL, day TTL (ms).
_QUOTA_TAKE = """
local used_m = tonumber(redis.call('GET', KEYS[1]) or '0')
local used_d = tonumber(redis.call('GET', KEYS[2]) or '0')
local paused = tonumber(redis.call('GET', KEYS[3]) or '0')
local disabled = tonumber(redis.call('GET', KEYS[4]) or '0')
local now = tonumber(ARGV[4])
local spend = tonumber(ARGV[1])
if paused > now or disabled > now then spend = 0 end
local per_m, per_d = tonumber(ARGV[2]), tonumber(ARGV[3])
if per_m > 0 then spend = math.min(spend, per_m - used_m) end
if per_d > 0 then spend = math.min(spend, per_d - used_d) end
if spend > 0 then
  used_m = redis.call('INCRBY', KEYS[1], spend)
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  used_d = redis.call('INCRBY', KEYS[2], spend)
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
else
  spend = 0
end
return {spend, used_m, used_d, paused, disabled}
"""

# KEYS: minute count, day count. ARGV: credits. DECRBY keeps the TTL; a count never goes below 0
# and an expired one is not brought back.
_QUOTA_GIVE_BACK = """
for i = 1, 2 do
  local used = tonumber(redis.call('GET', KEYS[i]) or '0')
  if used > 0 then redis.call('DECRBY', KEYS[i], math.min(used, tonumber(ARGV[1]))) end
end
return 0
"""

# KEYS as in _QUOTA_TAKE. ARGV: minute count, day count, paused until, disabled until (ms), then
# the TTL (ms) of each of the four keys; a stop with a TTL of 0 or less is over and ignored.
_QUOTA_MERGE = """
for i = 1, 4 do
  local want, ttl = tonumber(ARGV[i]), tonumber(ARGV[i + 4])
  if ttl > 0 and want > tonumber(redis.call('GET', KEYS[i]) or '0') then
    redis.call('SET', KEYS[i], ARGV[i], 'PX', ARGV[i + 4])
  end
end
return 0
"""


class RedisQuotaLedger:
    def __init__(self, client: aioredis.Redis, names: RedisNames) -> None:
        self._client = client
        self._names = names
        self._take = client.register_script(_QUOTA_TAKE)
        self._give_back = client.register_script(_QUOTA_GIVE_BACK)
        self._merge = client.register_script(_QUOTA_MERGE)

    def _keys(self, provider: str, now: float) -> list[str]:
        return _quota_keys(self._names.quota(provider), now)

    async def read(self, provider: str, now: float) -> QuotaUsage:
        with translated(f"reading the {provider} quota"):
            values: list[Any] = await self._client.mget(self._keys(provider, now))
        return _usage(*(int(v) if v is not None else 0 for v in values))

    async def take(
        self, provider: str, now: float, credits: int, per_minute: int, per_day: int
    ) -> tuple[int, QuotaUsage]:
        minute_ttl, day_ttl = _count_ttls(now)
        args = [credits, per_minute, per_day, _ms(now), minute_ttl, day_ttl]
        with translated(f"charging the {provider} quota"):
            reply: list[Any] = await self._take(keys=self._keys(provider, now), args=args)
        spent, *record = (int(v) for v in reply)
        return spent, _usage(*record)

    async def give_back(self, provider: str, now: float, credits: int) -> None:
        with translated(f"refunding the {provider} quota"):
            await self._give_back(keys=self._keys(provider, now)[:2], args=[credits])

    async def merge(self, provider: str, now: float, usage: QuotaUsage) -> None:
        now_ms = _ms(now)
        paused, disabled = _ms(usage.paused_until), _ms(usage.disabled_until)
        args = [usage.used_minute, usage.used_day, paused, disabled,
                *_count_ttls(now), paused - now_ms, disabled - now_ms]  # fmt: skip
        with translated(f"recording the {provider} quota"):
            await self._merge(keys=self._keys(provider, now), args=args)


def _quota_keys(stem: str, now: float) -> list[str]:
    minute, day = quota_windows(now)
    return [f"{stem}:minute:{minute}", f"{stem}:day:{day}", f"{stem}:paused",
            f"{stem}:disabled"]  # fmt: skip


def _count_ttls(now: float) -> tuple[int, int]:
    """TTLs (ms) of the minute and day counts of `now`: to the window's end, plus QUOTA_KEEP."""
    minute, day = quota_windows(now)
    return _ms((minute + 1) * MINUTE - now + QUOTA_KEEP), _ms((day + 1) * DAY - now + QUOTA_KEEP)


def _usage(used_minute: int, used_day: int, paused_ms: int, disabled_ms: int) -> QuotaUsage:
    return QuotaUsage(used_minute, used_day, paused_ms / 1000, disabled_ms / 1000)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)
