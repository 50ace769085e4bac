from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import RedisCluster, RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server per test session, on a free port (never the machine's 6379)."""
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A clean database on the session's redis-server (restarted if a test stopped it)."""
    if redis_server.proc is None:
        redis_server.start()
    redis_server.cli("FLUSHALL")
    return redis_server.url


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """One real three-master Redis Cluster per test session, on free loopback ports."""
    cluster = RedisCluster(Path(tmp_path_factory.mktemp("cluster")))
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def redis_cluster_url(redis_cluster: RedisCluster) -> str:
    """The session's cluster, emptied (FLUSHALL on every master)."""
    for node in redis_cluster.nodes:
        if node.proc is not None and "role:master" in node.cli("INFO", "replication"):
            node.cli("FLUSHALL")
    return redis_cluster.url


@pytest.fixture
def redis_cluster_replicated(tmp_path: Path) -> Iterator[RedisCluster]:
    """A cluster of its own (tests kill its nodes): three masters, each with a replica that
    takes over within ~2 s when its master dies or hangs."""
    cluster = RedisCluster(tmp_path, masters=3, replicas=1)
    cluster.start()
    yield cluster
    cluster.stop()
