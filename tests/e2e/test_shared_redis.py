"""Two deployments on one Redis server, on two DB numbers: pub/sub ignores DB numbers, so only
the key and channel prefix (derived from the DB) keeps each one's quotes its own."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import ClientConnection

from tests.e2e.test_replicas import open_client
from tests.support import AppServer, RedisServer, eventually, quotes_in, recv_json


@pytest.fixture
def deployments(redis_url: str) -> Iterator[tuple[AppServer, AppServer]]:
    first = AppServer({"REDIS_URL": redis_url, "SIM_SEED": "1"})
    second = AppServer({"REDIS_URL": redis_url.removesuffix("/0") + "/1", "SIM_SEED": "2"})
    first.start()
    try:
        second.start()
        yield first, second
    finally:
        for server in (first, second):
            if server.proc is not None:
                server.stop()


async def term_of(server: AppServer) -> int:
    async def probe() -> int | None:
        details = server.details()
        term: int | None = details["term"] if details["role"] == "leader" else None
        return term

    return await eventually(probe, 10, f"a fetcher on port {server.port}")


async def own_quotes(ws: ClientConnection, term: int, count: int, within: float = 15) -> None:
    """Receive `count` quotes: every one of them stamped with `term` (its fetcher's epoch)."""
    deadline = time.monotonic() + within
    got = 0
    while got < count:
        for quote in quotes_in(await recv_json(ws, max(deadline - time.monotonic(), 0.01))):
            assert quote["epoch"] == term, f"a quote of another deployment: {quote}"
            got += 1


async def test_each_deployment_hears_only_itself_and_outlives_the_other(
    deployments: tuple[AppServer, AppServer], redis_server: RedisServer
) -> None:
    first, second = deployments
    terms = (await term_of(first), await term_of(second))
    assert terms[0] != terms[1]  # else the check below could not tell them apart
    assert first.details()["redis_prefix"] == ""
    assert second.details()["redis_prefix"] == "db1:"

    ws_first = await open_client(first, "TCS", "INFY")
    ws_second = await open_client(second, "TCS", "INFY")
    try:
        await own_quotes(ws_first, terms[0], 6)
        await own_quotes(ws_second, terms[1], 6)

        # The runbook's names: DB 0 unprefixed, DB 1 under db1:.
        async def watched(*db: str) -> bool:
            key = "db1:subscriptions:active" if db else "subscriptions:active"
            return "TCS" in redis_server.cli(*db, "SMEMBERS", key).split("\n")

        await eventually(watched, 10, "TCS in subscriptions:active")
        await eventually(lambda: watched("-n", "1"), 10, "TCS in db1:subscriptions:active")

        second.kill()
        await own_quotes(ws_first, terms[0], 6)
        assert first.ready().status_code == 200
    finally:
        await ws_first.close()
        await ws_second.close()
