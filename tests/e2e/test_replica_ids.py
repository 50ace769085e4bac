"""Two real processes started with the same REPLICA_ID on one redis-server (a misconfiguration)."""

from __future__ import annotations

import pytest

from tests.e2e.test_replicas import cluster, leader_of
from tests.support import AppServer, RedisServer, eventually

__all__ = ["cluster"]


@pytest.mark.parametrize("cluster", [{"size": 2, "env": {"REPLICA_ID": "web-1"}}], indirect=True)
async def test_two_processes_with_one_replica_id_fetch_once_and_say_so(
    cluster: list[AppServer], redis_server: RedisServer
) -> None:
    leader = await leader_of(cluster)  # exactly one of them
    follower = next(s for s in cluster if s is not leader)
    holder = redis_server.cli("HGET", "fetcher:lease", "holder").strip()
    assert holder == leader.details()["holder"] != follower.details()["holder"]
    assert holder.startswith("web-1:")
    calls = {s.port: s.details()["feed_calls"] for s in cluster}

    async def five_more() -> bool:
        return bool(leader.details()["feed_calls"] >= calls[leader.port] + 5)

    await eventually(five_more, 10, "five fetches by the leader")
    assert follower.details()["feed_calls"] == calls[follower.port], "both fetch"

    async def both_warned() -> bool:
        return all("REPLICA_ID CLASH" in s.log() for s in cluster)

    await eventually(both_warned, 10, "a warning from each process")
    follower_nonce = follower.details()["holder"].rpartition(":")[2]
    assert follower_nonce in leader.details()["replica_id_clash"]
    # Neither mistakes the other's heartbeat for its own: both stay ready.
    assert all(s.ready().status_code == 200 for s in cluster)
