"""Several real replicas (uvicorn processes) on one real redis-server: one truth under failures."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from app.history import decode_points
from tests.fakes.provider import KEYS, FakeProviders, fake, fake_server
from tests.support import (
    AppServer,
    RedisServer,
    chart_points,
    eventually,
    quotes_in,
    recv_json,
    recv_until,
)

LEASE = 1.0
__all__ = ["fake", "fake_server"]


def cluster_env(redis_url: str) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "LEASE_TTL": str(LEASE),
        "REGISTRY_TTL": "1.5",
        "DRAIN_TIMEOUT": "3",
        "RECONNECT_SPREAD": "0.5",
    }


@pytest.fixture
def cluster(redis_url: str, request: pytest.FixtureRequest) -> Iterator[list[AppServer]]:
    options: dict[str, Any] = getattr(request, "param", {})
    size = options.get("size", 3)
    env = cluster_env(redis_url) | options.get("env", {})
    if env.get("FEEDS") == "twelvedata":
        env["TWELVEDATA_BASE_URL"] = request.getfixturevalue("fake").url("td")
    servers = [AppServer(env) for _ in range(size)]
    for server in servers:
        server.start()
    yield servers
    for server in servers:
        if server.proc is not None:
            server.stop()


async def leader_of(servers: list[AppServer]) -> AppServer:
    async def probe() -> AppServer | None:
        roles = {s: _role(s) for s in servers}
        leaders = [s for s, role in roles.items() if role == "leader"]
        return leaders[0] if len(leaders) == 1 else None

    return await eventually(probe, 10, "exactly one leader")


def _role(server: AppServer) -> str | None:
    try:
        role: str = server.details()["role"]
        return role
    except (httpx.HTTPError, KeyError):
        return None


async def open_client(server: AppServer, *symbols: str) -> ClientConnection:
    ws = await connect(server.ws_url)
    await recv_json(ws)
    await ws.send(orjson.dumps({"action": "subscribe", "symbols": list(symbols)}))
    await recv_until(ws, lambda m: m["type"] == "subscribed")
    return ws


class Versions:
    """Checks the ordering rule on everything a client receives."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[int, int]] = {}

    def add(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        quotes = quotes_in(message)
        for q in quotes:
            version = (q["epoch"], q["seq"])
            assert version > self.seen.get(q["symbol"], (-1, -1)), f"older after newer: {q}"
            self.seen[q["symbol"]] = version
        return quotes


async def test_one_fetcher_and_every_replica_in_sync(cluster: list[AppServer]) -> None:
    leader = await leader_of(cluster)
    followers = [s for s in cluster if s is not leader]
    before = {s.port: s.details()["feed_calls"] for s in cluster}
    term = leader.details()["term"]

    # A client on a follower gets the leader's quotes (its term is their epoch).
    ws = await open_client(followers[0], "TCS")
    versions = Versions()
    got = 0
    while got < 3:
        for q in versions.add(await recv_json(ws)):
            assert q["epoch"] == term
            got += 1
    await ws.close()

    # Long-poll is stateless: alternate replicas with one cursor, and seq only grows.
    cursor, last = "", (-1, -1)
    async with httpx.AsyncClient(timeout=10) as http:
        for i in range(6):
            server = cluster[i % len(cluster)]
            body = (
                await http.get(
                    f"{server.base}/api/poll", params={"symbols": "TCS", "cursor": cursor}
                )
            ).json()
            [q] = body["quotes"]
            assert (q["epoch"], q["seq"]) > last
            last, cursor = (q["epoch"], q["seq"]), body["cursor"]

    after = {s.port: s.details()["feed_calls"] for s in cluster}
    assert after[leader.port] > before[leader.port] + 3
    for follower in followers:
        assert after[follower.port] == before[follower.port], "a follower called the feed"


async def test_failover_after_sigkill_keeps_order(cluster: list[AppServer]) -> None:
    leader = await leader_of(cluster)
    survivor = next(s for s in cluster if s is not leader)
    ws = await open_client(survivor, "TCS", "INFY")
    versions = Versions()
    while len(versions.seen) < 2:
        versions.add(await recv_json(ws))
    old_epoch = versions.seen["TCS"][0]

    leader.kill()
    killed_at = time.monotonic()
    while True:
        quotes = versions.add(await recv_json(ws, within=10))
        if any(q["epoch"] > old_epoch for q in quotes):
            break
    gap = time.monotonic() - killed_at
    assert gap < 5.0, f"takeover took {gap:.1f}s"
    await leader_of([s for s in cluster if s is not leader])
    # Quotes keep flowing in the new term, in order.
    got = 0
    while got < 3:
        got += len(versions.add(await recv_json(ws)))
    await ws.close()


async def test_a_killed_replicas_subscriptions_heal(
    cluster: list[AppServer], redis_server: RedisServer
) -> None:
    leader = await leader_of(cluster)
    victim = next(s for s in cluster if s is not leader)
    ws = await open_client(victim, "WIPRO")

    def active() -> list[str]:
        return redis_server.cli("SMEMBERS", "subscriptions:active").splitlines()

    async def watched() -> bool:
        return (
            "WIPRO" in active()
            and redis_server.cli("GET", "subscriptions:count:WIPRO").strip() == "1"
        )

    await eventually(watched, 10, "WIPRO watched")
    victim.kill()
    await ws.close()

    async def healed() -> bool:
        return "WIPRO" not in active() and not redis_server.cli(
            "EXISTS", "subscriptions:count:WIPRO"
        ).strip().endswith("1")

    await eventually(healed, 8 * LEASE, "WIPRO to leave subscriptions:active")

    # Nobody watches it: the fetcher stops pricing it.
    def published_at() -> int:
        raw = redis_server.cli("HGET", "quotes:last", "WIPRO")
        return int(orjson.loads(raw)["published_at"])

    stamp = published_at()
    calls = leader.details()["feed_calls"]

    async def more_ticks() -> bool:
        return bool(leader.details()["feed_calls"] >= calls + 5)

    await eventually(more_ticks, 10, "five more fetches")
    assert published_at() == stamp


async def test_no_replica_stays_deaf_after_its_subscriber_is_killed(
    cluster: list[AppServer], redis_server: RedisServer
) -> None:
    await leader_of(cluster)
    clients = [await open_client(s, "TCS") for s in cluster]
    for ws in clients:
        await recv_until(ws, lambda m: bool(quotes_in(m)))
    killed = redis_server.cli("CLIENT", "KILL", "TYPE", "pubsub")
    assert int(killed) >= len(cluster)
    for ws in clients:
        # Each replica notices, rebuilds its listener and delivers fresh quotes again.
        await recv_until(ws, lambda m: m["type"] == "status" and m["state"] == "live", within=15)
        got = 0
        while got < 2:
            got += len(quotes_in(await recv_json(ws)))
        await ws.close()

    async def all_ready() -> bool:
        return all(s.ready().status_code == 200 for s in cluster)

    await eventually(all_ready, 10, "every replica ready again")


@pytest.mark.parametrize("cluster", [{"size": 1}], indirect=True)
async def test_a_frozen_redis_tells_json_clients_delayed_as_a_clean_outage_does(
    cluster: list[AppServer], redis_server: RedisServer
) -> None:
    # SIGSTOP: connections stay open and nothing errors, but nothing comes back either. The
    # listener is deaf (/ready 503); its clients must hear `delayed` too, not silence.
    await leader_of(cluster)
    ws = await open_client(cluster[0], "TCS")
    await recv_until(ws, lambda m: bool(quotes_in(m)))
    proc = redis_server.proc
    assert proc is not None
    proc.send_signal(signal.SIGSTOP)
    try:
        delayed = await recv_until(
            ws, lambda m: m["type"] == "status" and m["state"] == "delayed", within=15
        )
        assert delayed["reason"] == "bus_unresponsive"
        assert cluster[0].ready().status_code == 503
    finally:
        proc.send_signal(signal.SIGCONT)
    await recv_until(ws, lambda m: m["type"] == "status" and m["state"] == "live", within=20)
    await recv_until(ws, lambda m: bool(quotes_in(m)), within=10)
    await ws.close()


async def test_redis_outage_across_replicas(
    cluster: list[AppServer], redis_server: RedisServer
) -> None:
    await leader_of(cluster)
    clients = [await open_client(s, "INFY") for s in cluster]
    redis_server.stop()
    for ws in clients:
        await recv_until(ws, lambda m: m["type"] == "status" and m["state"] == "delayed")
    for server in cluster:
        assert server.ready().status_code == 503
        assert server.health().status_code == 200
    redis_server.start()  # empty: it kept nothing on disk
    for ws in clients:
        await recv_until(ws, lambda m: m["type"] == "status" and m["state"] == "live", within=20)
        got = 0
        while got < 2:
            got += len([q for q in quotes_in(await recv_json(ws)) if q["symbol"] == "INFY"])
    await leader_of(cluster)

    async def rebuilt() -> bool:
        count = redis_server.cli("GET", "subscriptions:count:INFY").strip()
        return count == str(len(cluster))

    await eventually(rebuilt, 10, "seed keys rebuilt")
    for ws in clients:
        await ws.close()


def _stuck_websocket(server: AppServer) -> socket.socket:
    """A client that completes the upgrade and then never reads or answers a close: it must
    not hold the drain up."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    assert b" 101 " in sock.recv(1024)
    return sock


@pytest.mark.parametrize("cluster", [{"size": 2, "env": {"DRAIN_GRACE": "1.5"}}], indirect=True)
async def test_sigterm_drains_clients_to_the_other_replica(cluster: list[AppServer]) -> None:
    leaving, staying = cluster
    await leader_of(cluster)
    ws = await open_client(leaving, "TCS")
    page = await connect(leaving.ws_url + "?format=html&symbols=TCS")
    stuck = _stuck_websocket(leaving)
    cursor = base64.urlsafe_b64encode(orjson.dumps([["TCS", 10**15, 0]])).decode()
    async with httpx.AsyncClient(timeout=30) as http:
        poll = asyncio.create_task(
            http.get(f"{leaving.base}/api/poll", params={"symbols": "TCS", "cursor": cursor})
        )
        await asyncio.sleep(0)  # let the request leave
        started = time.monotonic()
        assert leaving.proc is not None
        leaving.proc.send_signal(signal.SIGTERM)

        notice = await recv_until(ws, lambda m: m["type"] == "reconnect")
        assert 100 <= notice["delay_ms"] <= 500
        with pytest.raises(ConnectionClosed) as info:
            while True:
                await recv_json(ws)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1012
        # A page (htmx format) gets the same notice as a fragment its script reads.
        frames = []
        with pytest.raises(ConnectionClosed) as info:
            while True:
                frames.append(str(await asyncio.wait_for(page.recv(), 10)))
        assert any('<template id="reconnect" data-delay-ms="' in f for f in frames)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1012
        assert (await poll).status_code == 200
        # During the grace period readiness fails and upgrades are refused.
        assert leaving.ready().status_code == 503
        with pytest.raises(InvalidStatus) as refused:
            await connect(leaving.ws_url)
        assert refused.value.response.status_code == 503

    # Reconnect, as told, to the replica that stays.
    await asyncio.sleep(notice["delay_ms"] / 1000)
    ws = await open_client(staying, "TCS")
    await recv_until(ws, lambda m: bool(quotes_in(m)))
    await ws.close()

    code = await asyncio.to_thread(leaving.wait, 15)
    assert code == 0, leaving.log()
    assert time.monotonic() - started < 3 + 5, "drain exceeded its timeout"
    stuck.close()


@pytest.mark.parametrize(
    "cluster",
    [{"size": 3, "env": {"FEEDS": "twelvedata", "TWELVEDATA_API_KEY": KEYS["td"],
                         "TWELVEDATA_CALLS_PER_MINUTE": "100000", "BOARD_SYMBOLS": "AAPL,MSFT"}}],
    indirect=True,
)  # fmt: skip
async def test_three_replicas_cost_the_provider_what_one_does(
    fake: FakeProviders, cluster: list[AppServer]
) -> None:
    leader = await leader_of(cluster)
    await eventually(lambda: _positive(leader.details()["feed_calls"]), 10, "first fetch")
    # The leader keeps fetching while the counts are read: bracket each reading of the
    # replicas' counts with the fake's own, taken just before and just after it.
    fake_early = fake.state.calls["td"]
    calls_before = [s.details()["feed_calls"] for s in cluster]
    fake_before = fake.state.calls["td"]

    async def ten_more() -> bool:
        return bool(leader.details()["feed_calls"] >= calls_before[cluster.index(leader)] + 10)

    await eventually(ten_more, 20, "ten more fetches")
    fake_after = fake.state.calls["td"]
    calls_after = [s.details()["feed_calls"] for s in cluster]
    fake_late = fake.state.calls["td"]
    per_replica = [after - before for before, after in zip(calls_before, calls_after, strict=True)]
    assert sorted(per_replica)[:2] == [0, 0], f"followers called the provider: {per_replica}"
    # Every provider call the fake counted is one of the leader's: one replica's worth (a call
    # may be in flight at either end).
    made = sum(per_replica)
    assert fake_after - fake_before - 1 <= made <= fake_late - fake_early + 1, (
        made, fake_early, fake_before, fake_after, fake_late,
    )  # fmt: skip


@pytest.mark.parametrize(
    "cluster",
    [{"size": 2, "env": {"FEEDS": "twelvedata", "TWELVEDATA_API_KEY": KEYS["td"],
                         "TWELVEDATA_CALLS_PER_MINUTE": "100000", "TWELVEDATA_CALLS_PER_DAY": "12",
                         "BOARD_SYMBOLS": "AAPL,MSFT"}}],
    indirect=True,
)  # fmt: skip
async def test_the_next_fetcher_after_a_failover_goes_on_from_the_spent_quota(
    fake: FakeProviders, cluster: list[AppServer]
) -> None:
    if 86_400 - time.time() % 86_400 < 60:
        pytest.skip("too close to UTC midnight, when the daily count starts again")
    leader = await leader_of(cluster)
    survivor = next(s for s in cluster if s is not leader)

    async def day_spent() -> bool:
        return bool(leader.details()["providers"]["twelvedata"]["quota"]["blocked"] == "day")

    await eventually(day_spent, 20, "the fetcher to spend the day's 12 credits")
    assert sum(fake.state.symbols_asked.values()) == 12  # one credit per symbol asked for
    calls = fake.state.calls["td"]
    # A follower tracks no quota of its own, so it reports none.
    assert 'provider_quota_remaining{provider="twelvedata"' not in survivor.metrics_text()

    leader.kill()
    assert await leader_of([survivor]) is survivor
    fetches = survivor.details()["feed_calls"]

    async def five_more() -> bool:
        return bool(survivor.details()["feed_calls"] >= fetches + 5)

    await eventually(five_more, 10, "five fetch ticks of the new fetcher")
    assert fake.state.calls["td"] == calls, "the new fetcher spent a quota that was used up"
    quota = survivor.details()["providers"]["twelvedata"]["quota"]
    assert (quota["used_today"], quota["blocked"], quota["current"]) == (12, "day", True)
    metrics = survivor.metrics_text()
    assert 'stocktracker_provider_quota_remaining{provider="twelvedata",window="day"} 0.0' in (
        metrics
    )


@pytest.mark.parametrize("cluster", [{"size": 1}], indirect=True)
async def test_a_replica_started_later_draws_the_history_published_before_it(
    cluster: list[AppServer], redis_url: str, redis_server: RedisServer
) -> None:
    [first] = cluster
    await leader_of(cluster)

    async def ten_points() -> list[bytes] | None:
        out = redis_server.cli("LRANGE", "history:TCS", "0", "-1")
        entries = [line.encode() for line in out.split("\n") if line]
        return entries if len(entries) >= 10 else None

    stored = await eventually(ten_points, 15, "ten points of TCS history in Redis")
    published = [[t, str(p)] for t, p in decode_points(stored)]
    later = AppServer(cluster_env(redis_url))
    await asyncio.to_thread(later.start)
    try:
        assert _role(later) == "follower"  # it never fetched, so it recorded nothing itself
        async with httpx.AsyncClient(timeout=10) as http:
            late = (await http.get(f"{later.base}/stock/TCS")).text
            early = (await http.get(f"{first.base}/stock/TCS")).text
        drawn = chart_points(late)
        # Everything published before it started, in order (the last point may since have been
        # corrected by a quote with the same source time), then what came after.
        assert len(drawn) >= len(published)
        assert drawn[: len(published) - 1] == published[:-1]
        assert 'id="chart-note"' not in late
        # Both replicas draw the same line; the one asked second may have a newer point or two.
        shorter, longer = sorted([drawn, chart_points(early)], key=len)
        assert longer[: len(shorter) - 1] == shorter[:-1]
    finally:
        later.stop()


async def _positive(value: int) -> bool:
    return value > 0
