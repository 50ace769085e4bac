"""The app on Redis: quotes flow through real pub/sub, and the seed's keys show who watches what."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import connect

from app.models import decode_quote, encode_quote, encode_update
from tests.support import (
    AppServer,
    RedisServer,
    chart_points,
    eventually,
    quotes_in,
    recv_json,
    recv_until,
)


@pytest.fixture
def redis_app(redis_url: str) -> Iterator[AppServer]:
    server = AppServer({"REDIS_URL": redis_url, "REGISTRY_TTL": "2"})
    server.start()
    yield server
    server.stop()


async def test_quotes_reach_clients_through_redis(
    redis_app: AppServer, redis_server: RedisServer
) -> None:
    client = aioredis.Redis.from_url(redis_server.url)
    pubsub = client.pubsub()
    await pubsub.psubscribe("market-data:*")
    async with connect(redis_app.ws_url) as ws:
        await recv_json(ws)
        # WIPRO is not on the default board: it is fetched only because this client watches it.
        await ws.send(b'{"action":"subscribe","symbols":["WIPRO"],"id":"s"}')
        await recv_until(ws, lambda m: m["type"] == "subscribed")

        async def watched() -> bool:
            return "WIPRO" in redis_server.cli("SMEMBERS", "subscriptions:active").split("\n")

        await eventually(watched, 10, "WIPRO in subscriptions:active")
        assert redis_server.cli("GET", "subscriptions:count:WIPRO").strip() == "1"

        # What `redis-cli PSUBSCRIBE 'market-data:*'` shows: WIPRO quotes on the updates channel.
        async def wipro_on_the_wire() -> bool:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
            if message is None or message["channel"] != b"market-data:updates":
                return False
            return any(q["symbol"] == "WIPRO" for q in orjson.loads(message["data"])["quotes"])

        await eventually(wipro_on_the_wire, 10, "WIPRO on market-data:updates")

        seqs: list[int] = []
        while len(seqs) < 2:
            seqs += [q["seq"] for q in quotes_in(await recv_json(ws)) if q["symbol"] == "WIPRO"]
        assert seqs[1] > seqs[0]

        # Proof that delivery goes through Redis: a quote published straight into Redis by
        # somebody else (a far-future epoch, so it is newest) reaches this client.
        raw = await client.hget("quotes:last", "WIPRO")
        assert isinstance(raw, bytes)
        stored = decode_quote(raw)
        injected = replace(stored, epoch=stored.epoch + 10**9, seq=1, name="INJECTED")
        await client.publish(
            "market-data:updates", encode_update(injected.epoch, [encode_quote(injected)])
        )
        await recv_until(ws, lambda m: any(q["name"] == "INJECTED" for q in quotes_in(m)))

    async def unwatched() -> bool:
        return "WIPRO" not in redis_server.cli("SMEMBERS", "subscriptions:active").split("\n")

    await eventually(unwatched, 10, "WIPRO to leave subscriptions:active")
    assert redis_server.cli("EXISTS", "subscriptions:count:WIPRO").strip() == "0"
    await pubsub.aclose()  # type: ignore[no-untyped-call]
    await client.aclose()


async def test_long_poll_on_redis(redis_app: AppServer) -> None:
    async with httpx.AsyncClient(base_url=redis_app.base, timeout=30) as http:
        body = (await http.get("/api/poll", params={"symbols": "WIPRO"})).json()
        [first] = body["quotes"]
        body = (
            await http.get("/api/poll", params={"symbols": "WIPRO", "cursor": body["cursor"]})
        ).json()
        assert body["quotes"][0]["seq"] > first["seq"]


async def test_redis_outage_fails_readiness_not_liveness_and_heals(
    redis_app: AppServer, redis_server: RedisServer
) -> None:
    async with (
        httpx.AsyncClient(base_url=redis_app.base, timeout=5) as http,
        connect(redis_app.ws_url) as ws,
    ):

        async def ready() -> bool:
            return (await http.get("/ready")).status_code == 200

        await eventually(ready, 10, "/ready at start")
        await recv_json(ws)
        await ws.send(b'{"action":"subscribe","symbols":["TCS"]}')
        redis_server.stop()

        async def not_ready() -> bool:
            return (await http.get("/ready")).status_code == 503

        await eventually(not_ready, 10, "/ready to fail")
        assert (await http.get("/health")).status_code == 200
        await recv_until(ws, lambda m: m["type"] == "status" and m["state"] == "delayed")

        redis_server.start()
        await eventually(ready, 20, "/ready to recover")
        await recv_until(ws, lambda m: m["type"] == "status" and m["state"] == "live")
        # Fresh quotes flow again, through the rebuilt listener.
        got = 0
        while got < 2:
            got += len([q for q in quotes_in(await recv_json(ws)) if q["symbol"] == "TCS"])


async def test_the_stock_page_draws_without_history_while_redis_is_down(
    redis_app: AppServer, redis_server: RedisServer
) -> None:
    async with httpx.AsyncClient(base_url=redis_app.base, timeout=10) as http:

        async def drawn() -> bool:
            return len(chart_points((await http.get("/stock/TCS")).text)) >= 3

        await eventually(drawn, 15, "a chart with shared history")
        redis_server.stop()
        try:
            response = await http.get("/stock/TCS")
            assert response.status_code == 200
            assert 'id="chart-note"' in response.text
            assert "Earlier prices are unavailable right now" in response.text
            # The latest price this replica knows is still drawn, and the line grows live.
            assert len(chart_points(response.text)) == 1
        finally:
            redis_server.start()
