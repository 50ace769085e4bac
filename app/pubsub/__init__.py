"""Pick the shared-state backend by URL scheme; adapters are imported only when used."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from app.pubsub.base import Backend


@asynccontextmanager
async def open_backend(
    url: str,
    *,
    registry_ttl: float,
    client_name: str,
    lease_ttl: float = 2.0,
    history_points: int = 3000,
    history_ttl: float = 21600.0,
    redis_options: Mapping[str, Any] | None = None,
    prefix: str | None = None,
    cluster: bool = False,
    shards: int = 16,
) -> AsyncIterator[Backend]:
    """`memory://` for one process, `redis://` / `rediss://` / `unix://` for a cluster.

    `history_points` caps each symbol's chart history (entries); `history_ttl` (seconds) is how
    long a symbol's history outlives its last append. `prefix` goes before every Redis key and
    channel name; None derives it from the URL's DB number ("" for DB 0, `db{n}:` for DB n), so
    deployments on two DBs of one server never hear each other (pub/sub ignores DB numbers)."""
    if url.startswith("memory://"):
        from app.feeds.ledger import MemoryQuotaLedger
        from app.pubsub.memory import (
            MemoryBus,
            MemoryHistoryStore,
            MemoryLease,
            MemoryRegistry,
            MemorySnapshotStore,
        )

        bus, snapshots = MemoryBus(), MemorySnapshotStore()
        history = MemoryHistoryStore(history_points, history_ttl)
        lease = MemoryLease(bus, snapshots, history)
        registry = MemoryRegistry(registry_ttl)
        yield Backend(bus, snapshots, registry, lease, MemoryQuotaLedger(), history, "memory")
        return
    if cluster and url.startswith(("redis://", "rediss://")):
        async with _cluster_backend(
            url, registry_ttl=registry_ttl, client_name=client_name, lease_ttl=lease_ttl,
            history_points=history_points, history_ttl=history_ttl,
            redis_options=redis_options, prefix=prefix or "", shards=shards,
        ) as backend:  # fmt: skip
            yield backend
        return
    if url.startswith(("redis://", "rediss://", "unix://")):
        from app.feeds.ledger_redis import RedisQuotaLedger
        from app.pubsub.redis import (
            RedisBus,
            RedisHistoryStore,
            RedisLease,
            RedisRegistry,
            RedisSnapshotStore,
            connect,
        )
        from app.pubsub.redis_names import RedisNames, default_prefix, selected_db

        client = connect(url, client_name, **(redis_options or {}))
        names = RedisNames(default_prefix(selected_db(client)) if prefix is None else prefix)
        try:
            await _refuse_a_cluster(client)
            yield Backend(
                RedisBus(client, names),
                RedisSnapshotStore(client, names),
                RedisRegistry(client, names, registry_ttl),
                RedisLease(
                    client,
                    names,
                    lease_ttl,
                    history_points=history_points,
                    history_ttl=history_ttl,
                ),
                RedisQuotaLedger(client, names),
                RedisHistoryStore(client, names),
                "redis",
                names.prefix,
            )
        finally:
            await client.aclose()
        return
    raise ValueError(f"unsupported bus URL scheme: {url.split('://')[0]}")


async def _refuse_a_cluster(client: Any) -> None:
    """A node of a Redis Cluster without REDIS_CLUSTER=on would answer MOVED to most commands:
    say so at start. Best effort: a server that does not answer now is not refused for that."""
    import asyncio

    from app.pubsub.redis import REDIS_ERRORS

    try:
        async with asyncio.timeout(1.0):
            info = await client.info("cluster")
    except (*REDIS_ERRORS, TimeoutError):
        return
    if str(info.get("cluster_enabled", "0")) == "1":
        raise RuntimeError(
            "REDIS_URL names a node of a Redis Cluster: set REDIS_CLUSTER=on (see the README, "
            "'Past one Redis server: Redis Cluster')"
        )


@asynccontextmanager
async def _cluster_backend(
    url: str,
    *,
    registry_ttl: float,
    client_name: str,
    lease_ttl: float,
    history_points: int,
    history_ttl: float,
    redis_options: Mapping[str, Any] | None,
    prefix: str,
    shards: int,
) -> AsyncIterator[Backend]:
    """A Redis Cluster (app.pubsub.cluster): its adapters share one client and one view of the
    shards this process follows."""
    import redis

    from app.pubsub.cluster_names import ClusterNames, check_redis_py

    check_redis_py(redis.__version__)  # before importing what an old redis-py lacks

    from app.feeds.ledger_redis import RedisQuotaLedger
    from app.pubsub.cluster import (
        ClusterBus,
        ClusterHistoryStore,
        ClusterLease,
        ClusterRegistry,
        ClusterSnapshotStore,
        ShardInterest,
        cluster_client,
    )

    names = ClusterNames(prefix, shards)
    interest = ShardInterest(names)
    async with cluster_client(url, client_name, **(redis_options or {})) as client:
        yield Backend(
            ClusterBus(client, names, interest),
            ClusterSnapshotStore(client, names, interest),
            ClusterRegistry(client, names, registry_ttl, interest),
            ClusterLease(
                client, names, lease_ttl, history_points=history_points, history_ttl=history_ttl
            ),
            RedisQuotaLedger(client, names),  # type: ignore[arg-type]
            ClusterHistoryStore(client, names),
            "redis-cluster",
            names.prefix,
        )
