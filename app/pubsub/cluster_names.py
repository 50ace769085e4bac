"""Key and channel names on a Redis Cluster: the single-server layout, with hash tags.

A Lua script may touch keys of one slot only, and a sharded channel is published in the slot
of its name, so every family of keys a script touches together carries the same hash tag (the
part of a name in `{...}`, which alone decides the slot):

- per shard `k` (tag `{s<k>}`): `quotes:last:{s3}` (the snapshots of that shard's symbols),
  `history:{s3}:<symbol>`, the shard's updates channel `market-data:updates:{s3}` (SPUBLISH) and
  the shard's fence, `fetcher:lease:{s3}` / `fetcher:term:{s3}` (see app.pubsub.cluster);
- the lease: `fetcher:lease:{fetcher}`, `fetcher:term:{fetcher}`;
- the registry: `subscriptions:replica:{subscriptions}:<id>`,
  `subscriptions:replicas:{subscriptions}`, `subscriptions:active:{subscriptions}`,
  `subscriptions:count:{subscriptions}:<symbol>`;
- each provider's quota: `quota:{<provider>}:minute:<n>`, `...:day:<n>`, `:paused`, `:disabled`;
- the control, subscription and alert channels (sharded) and the alerts' keys
  (app.alerts.cluster_store) in the lease's slot, `market-data:control:{fetcher}`, so the alerts'
  fenced script can check the lease and SPUBLISH in one slot.

A symbol's shard is `crc32(symbol) % shards`: stable across processes and versions (Python's
`hash` is salted per process), so every replica and the fetcher agree.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from app.pubsub.base import UPDATES_CHANNEL
from app.pubsub.redis_names import (
    ACTIVE_KEY,
    COUNT_PREFIX,
    HISTORY_PREFIX,
    LAST_QUOTES_KEY,
    LEASE_KEY,
    QUOTA_PREFIX,
    REPLICA_PREFIX,
    REPLICAS_KEY,
    TERM_KEY,
    RedisNames,
)

MAX_SHARDS = 1024
# The hash tag of the lease, and of everything a script fenced by the lease touches in one slot.
LEASE_TAG = "{fetcher}"
# redis-py with the asyncio cluster client this adapter is tested with (pub/sub per node and
# cluster pipelines in MULTI included); older versions are refused at start, with this message.
MIN_REDIS_PY = (8, 1)
_UPDATES_STEM = UPDATES_CHANNEL + ":{s"


def check_redis_py(version: str) -> None:
    """Refuse a redis-py older than MIN_REDIS_PY with a message that says what to do."""
    try:
        found = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        return  # a development build: let it try
    if found < MIN_REDIS_PY:
        want = ".".join(map(str, MIN_REDIS_PY))
        raise RuntimeError(
            f"REDIS_CLUSTER=on needs redis-py >= {want} (installed: {version}); install the "
            f"versions of requirements.txt (`pip install -r requirements.txt`)"
        )


def shard_of(symbol: str, shards: int) -> int:
    """The shard of `symbol`, in 0..shards-1 (CRC-32 of its UTF-8 bytes)."""
    return zlib.crc32(symbol.encode()) % shards


def group_by_shard(symbols: Iterable[str], shards: int) -> dict[int, list[str]]:
    groups: dict[int, list[str]] = {}
    for symbol in symbols:
        groups.setdefault(shard_of(symbol, shards), []).append(symbol)
    return groups


@dataclass(frozen=True, slots=True)
class ClusterNames(RedisNames):
    shards: int = 16

    def __post_init__(self) -> None:
        if "{" in self.prefix or "}" in self.prefix:
            raise ValueError(
                "REDIS_PREFIX must not contain '{' or '}' on a Redis Cluster: the app places "
                "its keys in slots with hash tags of its own"
            )
        if not 1 <= self.shards <= MAX_SHARDS:
            raise ValueError(f"shards must be 1..{MAX_SHARDS}, not {self.shards}")

    def shard(self, symbol: str) -> int:
        return shard_of(symbol, self.shards)

    def updates(self, shard: int) -> str:
        """The sharded channel of shard `shard`'s updates."""
        return f"{self.prefix}{UPDATES_CHANNEL}:{{s{shard}}}"

    def channel(self, name: str) -> str:
        """Every channel but the updates (control, subscriptions, alerts: a few messages a
        second) in the lease's slot, so a script fenced by the lease may SPUBLISH on it."""
        return f"{self.prefix}{name}:{LEASE_TAG}"

    def logical(self, channel: str) -> str:
        name = channel[len(self.prefix) :] if channel.startswith(self.prefix) else channel
        if name.startswith(_UPDATES_STEM):
            return UPDATES_CHANNEL
        return name.removesuffix(":" + LEASE_TAG)

    def last_quotes_of(self, shard: int) -> str:
        return f"{self.prefix}{LAST_QUOTES_KEY}:{{s{shard}}}"

    @property
    def last_quotes(self) -> str:  # not one hash on a cluster: see last_quotes_of
        raise AttributeError("a cluster keeps one snapshot hash per shard (last_quotes_of)")

    def history(self, symbol: str) -> str:
        return f"{self.prefix}{HISTORY_PREFIX}{{s{self.shard(symbol)}}}:{symbol}"

    def shard_lease(self, shard: int) -> str:
        """The shard's copy of the lease's token, renewed with it (the shard's fence)."""
        return f"{self.prefix}{LEASE_KEY}:{{s{shard}}}"

    def shard_term(self, shard: int) -> str:
        """The newest term that has fenced the shard (never goes back)."""
        return f"{self.prefix}{TERM_KEY}:{{s{shard}}}"

    @property
    def active(self) -> str:
        return f"{self.prefix}{ACTIVE_KEY}:{{subscriptions}}"

    def count(self, symbol: str) -> str:
        return f"{self.prefix}{COUNT_PREFIX}{{subscriptions}}:{symbol}"

    def replica(self, replica_id: str) -> str:
        return f"{self.prefix}{REPLICA_PREFIX}{{subscriptions}}:{replica_id}"

    @property
    def replicas(self) -> str:
        return f"{self.prefix}{REPLICAS_KEY}:{{subscriptions}}"

    @property
    def lease(self) -> str:
        return f"{self.prefix}{LEASE_KEY}:{LEASE_TAG}"

    @property
    def term(self) -> str:
        return f"{self.prefix}{TERM_KEY}:{LEASE_TAG}"

    def quota(self, provider: str) -> str:
        return f"{self.prefix}{QUOTA_PREFIX}{{{provider}}}"
