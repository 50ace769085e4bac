from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from app.pubsub import open_backend
from app.pubsub.base import Backend


def backend_url(kind: str, request: pytest.FixtureRequest) -> str:
    """`memory`, `redis` (DB 0: no prefix), `redis-db1` (DB 1: every name prefixed `db1:`) or
    `redis-cluster` (a real three-master cluster)."""
    if kind == "memory":
        return "memory://"
    if kind == "redis-cluster":
        cluster_url: str = request.getfixturevalue("redis_cluster_url")
        return cluster_url
    url: str = request.getfixturevalue("redis_url")
    return url.removesuffix("/0") + "/1" if kind == "redis-db1" else url


@pytest.fixture(params=["memory", "redis", "redis-db1", "redis-cluster"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    """Each backend in turn: the contract tests run against all (Redis for real, with and
    without a key prefix, and a Redis Cluster)."""
    url = backend_url(request.param, request)
    cluster = request.param == "redis-cluster"
    async with open_backend(url, registry_ttl=1.0, client_name="contract", cluster=cluster) as b:
        yield b


def raw_messages(backend: Backend) -> None:
    """Skip on a cluster: its updates are fetch ticks split by shard, never raw bytes, and its
    listener follows the shards its replica watches (tests/pubsub/test_cluster.py)."""
    if backend.kind == "redis-cluster":
        pytest.skip("a cluster's updates are split by shard: see tests/pubsub/test_cluster.py")
