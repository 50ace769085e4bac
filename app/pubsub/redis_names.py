"""Every Redis key and channel name the app uses, in one place, under one prefix.

Two deployments can share a Redis server: keys are kept apart by DB number, but pub/sub ignores
DB numbers, so each deployment's names carry a prefix. The default comes from the DB the client
selects: none for DB 0 (the runbook's `market-data:updates` and `subscriptions:active` work as
they are), `db{n}:` for DB n. `REDIS_PREFIX` overrides it. A prefix with a hash tag
(`{app}:`) puts every key in one cluster slot.

The ports speak logical channel names (`app.pubsub.base`); the adapters map them with
`channel()` on the way out and `logical()` on the way in. Lua scripts get their key names through
KEYS, never build them.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

LAST_QUOTES_KEY = "quotes:last"
HISTORY_PREFIX = "history:"
ACTIVE_KEY = "subscriptions:active"
COUNT_PREFIX = "subscriptions:count:"
REPLICA_PREFIX = "subscriptions:replica:"
REPLICAS_KEY = "subscriptions:replicas"
LEASE_KEY = "fetcher:lease"
TERM_KEY = "fetcher:term"
QUOTA_PREFIX = "quota:"


def default_prefix(db: int) -> str:
    """The prefix of a deployment on Redis DB `db`: "" for DB 0, else `db{n}:`."""
    return "" if db == 0 else f"db{db}:"


def selected_db(client: aioredis.Redis) -> int:
    """The DB number the client's connections select (from the URL's path or `?db=`)."""
    return int(client.connection_pool.connection_kwargs.get("db") or 0)


@dataclass(frozen=True, slots=True)
class RedisNames:
    prefix: str = ""

    def channel(self, name: str) -> str:
        return self.prefix + name

    def logical(self, channel: str) -> str:
        """A received channel's name as the ports know it."""
        return channel[len(self.prefix) :] if channel.startswith(self.prefix) else channel

    @property
    def last_quotes(self) -> str:
        return self.prefix + LAST_QUOTES_KEY

    def history(self, symbol: str) -> str:
        return f"{self.prefix}{HISTORY_PREFIX}{symbol}"

    @property
    def active(self) -> str:
        return self.prefix + ACTIVE_KEY

    def count(self, symbol: str) -> str:
        return f"{self.prefix}{COUNT_PREFIX}{symbol}"

    def replica(self, replica_id: str) -> str:
        return f"{self.prefix}{REPLICA_PREFIX}{replica_id}"

    @property
    def replicas(self) -> str:
        return self.prefix + REPLICAS_KEY

    @property
    def lease(self) -> str:
        return self.prefix + LEASE_KEY

    @property
    def term(self) -> str:
        return self.prefix + TERM_KEY

    def quota(self, provider: str) -> str:
        """The stem of a provider's quota keys (`...:minute:{n}`, `:day:{n}`, `:paused`, ...)."""
        return f"{self.prefix}{QUOTA_PREFIX}{provider}"
