"""A replica whose clients get nothing because nobody fetches says so: `/ready` fails.

The fetcher lease can be held by a process that never fetches (here a ghost written with
redis-cli, as a misconfigured or wedged process would leave it): no replica can take it, so
no quote flows, while every replica's own fetch loop looks fine (a follower is "ready to take
over"). Before, `/ready` stayed 200 and the load balancer kept sending users to a replica that
could give them nothing.
"""

from __future__ import annotations

from typing import Any

from tests.e2e.test_replicas import open_client
from tests.support import AppServer, RedisServer, eventually, quotes_in, recv_until

GHOST = "ghost-replica:0000"


def readiness(server: AppServer) -> tuple[int, list[str]]:
    response = server.ready()
    reasons: list[str] = response.json()["reasons"]
    return response.status_code, reasons


async def test_a_lease_held_by_a_ghost_fails_readiness_until_a_fetcher_publishes(
    redis_url: str, redis_server: RedisServer
) -> None:
    redis_server.cli("HSET", "fetcher:lease", "holder", GHOST, "token", "7")
    redis_server.cli("PEXPIRE", "fetcher:lease", "600000")
    server = AppServer({"REDIS_URL": redis_url, "LEASE_TTL": "1", "REGISTRY_TTL": "1.5"})
    server.start()
    try:
        # Nobody watches anything yet: no reason to send users elsewhere.
        async def ready() -> bool:
            return readiness(server) == (200, [])

        await eventually(ready, 15, "the replica ready")
        assert server.details()["role"] == "follower"

        ws = await open_client(server, "TCS")

        async def unready() -> list[str] | None:
            code, reasons = readiness(server)
            return reasons if code == 503 else None

        # Five fetch intervals, at least 10 s, of silence: then readiness fails, saying why.
        [reason] = await eventually(unready, 40, "readiness to fail")
        assert reason.startswith("no live fetcher: 1 watched symbol(s) got no quote for "), reason
        assert f"held by {GHOST} (term 7)" in reason, reason
        fetcher: dict[str, Any] = server.details()["fetcher"]
        assert fetcher["last_tick_age"] is None and fetcher["last_update_age"] is None

        # The ghost goes: the replica takes the lease, fetches, and is ready again.
        redis_server.cli("DEL", "fetcher:lease")
        await recv_until(ws, lambda m: bool(quotes_in(m)), 15)
        await eventually(ready, 15, "the replica ready again")

        async def heard_itself() -> bool:
            details = server.details()
            return bool(details["fetcher"]["holder"] == details["holder"])

        await eventually(heard_itself, 10, "the new fetcher's announcement")
        await ws.close()
    finally:
        server.stop()
