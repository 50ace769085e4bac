"""Pick the shared-state backend by URL scheme; adapters are imported only when used."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from app.pubsub.base import Bus, SnapshotStore, SubscriptionRegistry


@dataclass(frozen=True, slots=True)
class Backend:
    bus: Bus
    snapshots: SnapshotStore
    registry: SubscriptionRegistry
    kind: str


@asynccontextmanager
async def open_backend(
    url: str, *, registry_ttl: float, client_name: str
) -> AsyncIterator[Backend]:
    """`memory://` for one process, `redis://` / `rediss://` / `unix://` for a cluster."""
    if url.startswith("memory://"):
        from app.pubsub.memory import MemoryBus, MemoryRegistry, MemorySnapshotStore

        yield Backend(MemoryBus(), MemorySnapshotStore(), MemoryRegistry(registry_ttl), "memory")
        return
    if url.startswith(("redis://", "rediss://", "unix://")):
        from app.pubsub.redis import RedisBus, RedisRegistry, RedisSnapshotStore, connect

        client = connect(url, client_name)
        try:
            yield Backend(
                RedisBus(client),
                RedisSnapshotStore(client),
                RedisRegistry(client, registry_ttl),
                "redis",
            )
        finally:
            await client.aclose()
        return
    raise ValueError(f"unsupported bus URL scheme: {url.split('://')[0]}")
