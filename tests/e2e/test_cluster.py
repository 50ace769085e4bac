"""Replicas (uvicorn processes) on a real Redis Cluster (REDIS_CLUSTER=on): in sync through
sharded pub/sub, the fetcher lease handed over between replicas, and a node's failover."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection

from app.pubsub.cluster_names import ClusterNames
from tests.e2e.test_replicas import Versions, leader_of, open_client
from tests.support import AppServer, RedisCluster, eventually, recv_json

LEASE = 1.0


def cluster_env(url: str) -> dict[str, str]:
    return {
        "REDIS_URL": url,
        "REDIS_CLUSTER": "on",
        "REDIS_SHARDS": "16",
        "LEASE_TTL": str(LEASE),
        "REGISTRY_TTL": "1.5",
        "DRAIN_TIMEOUT": "3",
        "RECONNECT_SPREAD": "0.5",
    }


def replicas(url: str, size: int = 2) -> Iterator[list[AppServer]]:
    servers = [AppServer(cluster_env(url)) for _ in range(size)]
    for server in servers:
        server.start()
    yield servers
    for server in servers:
        if server.proc is not None:
            server.stop()


@pytest.fixture
def two(redis_cluster_url: str) -> Iterator[list[AppServer]]:
    yield from replicas(redis_cluster_url)


async def quotes_until(
    ws: ClientConnection, versions: Versions, done: Any, within: float = 10.0
) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + within
    while not done(got):
        assert time.monotonic() < deadline, f"only {got} within {within}s"
        got += versions.add(await recv_json(ws, within=within))
    return got


async def test_two_replicas_on_the_cluster_give_the_same_quotes_in_order(
    two: list[AppServer],
) -> None:
    leader = await leader_of(two)
    assert leader.details()["backend"] == "redis-cluster"
    symbols = ["TCS", "INFY", "AAPL"]
    clients = [await open_client(server, *symbols) for server in two]
    seen: list[list[tuple[str, int, int, str]]] = []
    for ws in clients:
        got = await quotes_until(ws, Versions(), lambda g: len(g) >= 12)
        seen.append([(q["symbol"], q["epoch"], q["seq"], q["price"]) for q in got])
        await ws.close()
    # Both heard the same quotes of each symbol, from the later client's first one on, in order.
    for symbol in symbols:
        lines = [[v for v in line if v[0] == symbol] for line in seen]
        start = max(line[0][1:3] for line in lines)
        lines = [[v for v in line if v[1:3] >= start] for line in lines]
        common = min(len(line) for line in lines)
        assert common >= 1 and lines[0][:common] == lines[1][:common]


async def test_lease_failover_between_replicas_on_the_cluster(two: list[AppServer]) -> None:
    leader = await leader_of(two)
    survivor = next(s for s in two if s is not leader)
    ws = await open_client(survivor, "TCS", "INFY")
    versions = Versions()
    await quotes_until(ws, versions, lambda g: len(versions.seen) == 2)
    old_epoch = versions.seen["TCS"][0]
    leader.kill()
    killed = time.monotonic()
    await quotes_until(ws, versions, lambda g: any(q["epoch"] > old_epoch for q in g))
    assert time.monotonic() - killed < 5.0
    assert survivor.details()["role"] == "leader"
    await quotes_until(ws, versions, lambda g: len(g) >= 3)
    await ws.close()


async def test_a_node_failover_is_survived(redis_cluster_replicated: RedisCluster) -> None:
    replicated = redis_cluster_replicated
    servers = next(gen := replicas(replicated.url, 1))
    [server] = servers
    try:
        await leader_of(servers)
        ws = await open_client(server, "TCS")
        versions = Versions()
        await quotes_until(ws, versions, lambda g: len(g) >= 2)
        # Kill the master that serves TCS's shard channel (and its snapshots).
        names = ClusterNames("", 16)
        victim = replicated.owner(names.updates(names.shard("TCS")))
        replicated.kill(victim)
        killed = time.monotonic()
        states: list[str] = []
        last = versions.seen["TCS"]
        while True:
            try:
                message = await recv_json(ws, within=20)
            except TimeoutError:
                raise AssertionError(f"stuck after {states}:\n{server.log()[-6000:]}") from None
            if message.get("type") == "status":
                states.append(message["state"])
            versions.add(message)
            if "delayed" in states and versions.seen["TCS"] > last and states[-1] == "live":
                break
            assert time.monotonic() - killed < 20, f"no recovery: {states}"
        recovered = time.monotonic() - killed
        assert states[0] == "delayed"
        assert replicated.owner(names.updates(names.shard("TCS"))) is not victim
        # And quotes keep coming from the promoted replica.
        got = await quotes_until(ws, versions, lambda g: len(g) >= 3)
        assert all(q["symbol"] == "TCS" for q in got)
        print(f"node failover: delayed, then live with new quotes {recovered:.1f}s after the kill")
        await ws.close()
    finally:
        for _ in gen:
            pass


async def test_a_replica_started_before_its_cluster_serves_says_not_ready_and_heals(
    tmp_path: Path,
) -> None:
    """The cluster client's "no node reachable" error (not a RedisError) is translated at the
    boundary like any other: /health answers, /ready says why not, the loops log one line per
    attempt and no traceback, and the replica goes live once the cluster is up."""
    cluster = RedisCluster(tmp_path)  # ports chosen, nothing listening yet
    [server] = next(gen := replicas(cluster.url, 1))
    try:
        async with httpx.AsyncClient(base_url=server.base, timeout=5) as http:

            async def unready() -> str | None:
                reply = await http.get("/ready")
                return reply.text if reply.status_code == 503 else None

            assert "bus does not answer" in await eventually(unready, 10, "/ready to say 503")
            assert (await http.get("/health")).status_code == 200
            ws = await open_client(server, "TCS")
            cluster.start()
            await quotes_until(ws, Versions(), lambda g: len(g) >= 2, within=30)
            await ws.close()
        # Nor does a connection redis-py closes under a command while the cluster forms (its
        # CLUSTERDOWN handling closes them all) crash a loop: see closed_under_the_call.
        assert "Traceback" not in server.log()
    finally:
        for _ in gen:
            pass
        cluster.stop()
