"""Real uvicorn, real WebSocket client: the protocol of docs/protocol.md, end to end."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.e2e.conftest import serve
from tests.support import AppServer, quotes_in, recv_json, recv_until, wait_for


@pytest.fixture(scope="module", params=["fast", "asgi"])
def app_server(request: pytest.FixtureRequest) -> Iterator[AppServer]:
    """Every test here runs against both send paths: app.ws.fastpath and plain ASGI."""
    yield from serve({"WS_FAST_PATH": "on" if request.param == "fast" else "off"})


async def subscribe(ws: ClientConnection, *symbols: str, rid: str = "c1") -> dict[str, Any]:
    await ws.send(orjson.dumps({"action": "subscribe", "symbols": list(symbols), "id": rid}))
    return await recv_until(ws, lambda m: m["type"] == "subscribed" and m["id"] == rid)


async def test_subscribe_snapshot_live_updates_unsubscribe(app_server: AppServer) -> None:
    async with connect(app_server.ws_url) as ws, connect(app_server.ws_url) as clock:
        welcome = await recv_json(ws)
        assert welcome["type"] == "welcome" and welcome["limits"]["max_symbols"] == 5
        assert welcome["status"] == "live"

        await ws.send(b'{"action":"subscribe","symbols":["TCS"],"id":"c1"}')
        ack = await recv_json(ws)
        assert ack == {
            "type": "subscribed",
            "id": "c1",
            "accepted": ["TCS"],
            "rejected": [],
            "symbols": ["TCS"],
        }
        snapshot = await recv_json(ws)
        assert snapshot["type"] == "snapshot"
        [quote] = snapshot["quotes"]
        assert quote["symbol"] == "TCS" and quote["source"] == "simulated"
        assert quote["currency"] == "INR" and float(quote["price"]) > 0

        seqs = [quote["seq"]]
        while len(seqs) < 3:
            for q in quotes_in(await recv_json(ws)):
                assert q["symbol"] == "TCS"
                seqs.append(q["seq"])
        assert seqs == sorted(seqs) and len(set(seqs)) == 3

        await ws.send(b'{"action":"unsubscribe","symbols":["TCS"],"id":"u1"}')
        ack = await recv_until(ws, lambda m: m["type"] == "unsubscribed")
        assert ack["accepted"] == ["TCS"] and ack["symbols"] == []

        # Let at least two more TCS updates happen (seen by another client), then use a ping
        # as a barrier: nothing about TCS may reach the unsubscribed client before its pong.
        await subscribe(clock, "TCS")
        seen = 0
        while seen < 3:
            seen += len(quotes_in(await recv_json(clock)))
        await ws.send(b'{"action":"ping","t":"barrier"}')
        while (message := await recv_json(ws))["type"] != "pong":
            assert not quotes_in(message), f"update after unsubscribe: {message}"
        assert message["t"] == "barrier"


async def test_malformed_frames_get_errors_and_the_connection_keeps_working(
    app_server: AppServer,
) -> None:
    cases = [
        (b"not json", "bad_json"),
        (b"[1,2,3]", "bad_request"),
        (b'{"action":"dance"}', "unknown_action"),
        (b'{"action":"subscribe"}', "bad_request"),
        (b'{"action":"subscribe","symbols":"TCS"}', "bad_request"),
        (b'{"action":"subscribe","symbols":[42]}', "bad_request"),
    ]
    async with connect(app_server.ws_url) as ws:
        await recv_json(ws)  # welcome
        for frame, code in cases:
            await ws.send(frame)
            error = await recv_until(ws, lambda m: m["type"] == "error")
            assert error["code"] == code and error["message"], frame
        await ws.send(b"\x00\x01 binary junk")
        assert (await recv_until(ws, lambda m: m["type"] == "error"))["code"] == "bad_json"
        ack = await subscribe(ws, "INFY")
        assert ack["accepted"] == ["INFY"]


async def test_bad_symbols_are_rejected_one_by_one(app_server: AppServer) -> None:
    async with connect(app_server.ws_url) as ws:
        await recv_json(ws)
        first = await subscribe(ws, "AAPL", "MSFT")
        assert first["accepted"] == ["AAPL", "MSFT"]
        ack = await subscribe(
            ws, "<script>", "", "NOPE", "infy", "INFY", "TCS", "HDFCBANK", "SBIN", rid="c2"
        )
        rejected = {(r["symbol"], r["code"]) for r in ack["rejected"]}
        assert rejected == {
            ("<script>", "invalid_symbol"), ("", "invalid_symbol"), ("NOPE", "unknown_symbol"),
            ("INFY", "duplicate"), ("SBIN", "limit_exceeded"),
        }  # fmt: skip
        assert ack["accepted"] == ["INFY", "TCS", "HDFCBANK"]
        assert ack["symbols"] == ["AAPL", "HDFCBANK", "INFY", "MSFT", "TCS"]
        again = await subscribe(ws, "NIFTY 50", rid="c3")
        assert again["accepted"] == [] and again["rejected"][0]["code"] == "limit_exceeded"
        assert again["symbols"] == ack["symbols"]  # existing subscriptions unchanged


async def test_oversized_message_closes_with_1009(app_server: AppServer) -> None:
    async with connect(app_server.ws_url, max_size=None) as ws:
        await recv_json(ws)
        await ws.send("x" * 5000)  # the test server's limit is 4096 bytes
        with pytest.raises(ConnectionClosed) as info:
            while True:
                await recv_json(ws)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009


async def test_hostile_origin_is_refused_with_403(app_server: AppServer) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with connect(app_server.ws_url, origin="https://evil.example"):  # type: ignore[arg-type]
            pass
    assert info.value.response.status_code == 403
    own = f"http://127.0.0.1:{app_server.port}"
    async with connect(app_server.ws_url, origin=own) as ws:  # type: ignore[arg-type]
        assert (await recv_json(ws))["type"] == "welcome"


async def test_a_flood_is_cut_off_and_other_clients_never_notice(app_server: AppServer) -> None:
    async with connect(app_server.ws_url) as flooder, connect(app_server.ws_url) as calm:
        await recv_json(flooder)
        await recv_json(calm)
        await subscribe(calm, "TCS")
        for _ in range(400):
            await flooder.send(b'{"action":"ping"}')
        codes = []
        with pytest.raises(ConnectionClosed) as info:
            while True:
                message = await recv_json(flooder)
                if message["type"] == "error":
                    codes.append(message["code"])
        assert "rate_limited" in codes
        assert info.value.rcvd is not None and info.value.rcvd.code == 1008
        got = 0
        while got < 2:
            got += len(quotes_in(await recv_json(calm)))


async def test_ping_pong(app_server: AppServer) -> None:
    async with connect(app_server.ws_url) as ws:
        await recv_json(ws)
        await ws.send(b'{"action":"ping","t":1234.5,"id":7}')
        pong = await recv_until(ws, lambda m: m["type"] == "pong")
        assert pong["t"] == 1234.5 and pong["id"] == 7 and pong["server_time"] > 0


async def test_html_format_pushes_swappable_rows(app_server: AppServer) -> None:
    url = app_server.ws_url + "?format=html&symbols=TCS,NIFTY%2050"
    async with connect(url) as ws:
        status = await asyncio.wait_for(ws.recv(), 10)
        assert 'id="feed-status"' in status and "Live" in status
        rows: set[str] = set()
        while len(rows) < 2:
            fragment = str(await asyncio.wait_for(ws.recv(), 10))
            assert 'hx-swap-oob="true"' in fragment
            rows.update(r for r in ("q-TCS", "q-NIFTY_2050") if f'id="{r}"' in fragment)


# Quotes flow fast and a client that reads nothing for half a second is given up on.
SLOW_CONSUMER = {
    "SIM_SYMBOLS": "200", "MAX_SYMBOLS_PER_CONNECTION": "200", "FETCH_INTERVAL": "0.05",
    "SEND_TIMEOUT": "0.5",
}  # fmt: skip


@asynccontextmanager
async def unread(server: AppServer) -> AsyncIterator[ClientConnection]:
    """A client with tiny buffers that subscribes to 150 symbols, then reads nothing until told.
    (max_queue=1: the client library stops reading the socket once one message waits.)"""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    async with connect(server.ws_url, sock=sock, max_queue=1) as ws:
        symbols = ["TCS", *(f"SIM{n:03d}" for n in range(1, 150))]
        await ws.send(orjson.dumps({"action": "subscribe", "symbols": symbols}))
        yield ws


@pytest.mark.parametrize("path", ["fast", "asgi"])
async def test_a_client_that_stops_reading_is_closed_with_1013(path: str) -> None:
    server = AppServer({**SLOW_CONSUMER, "WS_FAST_PATH": "on" if path == "fast" else "off"})
    server.start()
    try:
        async with unread(server) as ws:
            closes = "stocktracker_slow_client_closes_total 1.0"
            wait_for(lambda: closes in server.metrics_text(), 20, "the server to give up")
            with pytest.raises(ConnectionClosed) as info:
                while True:  # now read fast, through the backlog, up to the close frame
                    await ws.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == 1013
        assert "Exception in ASGI application" not in server.log()
    finally:
        server.stop()


def established(port: int) -> int:
    """TCP connections in ESTABLISHED state whose local port is `port` (the server's side)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            for line in fh.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                count += int(local.rsplit(":", 1)[1], 16) == port and state == "01"
    return count


async def test_a_client_that_never_reads_again_is_dropped_not_kept() -> None:
    # Not even the 1013 close frame fits in its buffers: the fast path aborts the connection
    # rather than keep its socket and state until the server shuts down.
    server = AppServer(SLOW_CONSUMER)
    server.start()
    try:
        async with unread(server):
            wait_for(lambda: established(server.port) == 1, 10, "the connection to be counted")
            closes = "stocktracker_slow_client_closes_total 1.0"
            wait_for(lambda: closes in server.metrics_text(), 20, "the server to give up")
            wait_for(lambda: established(server.port) == 0, 20, "the server to drop the socket")
        assert "Exception in ASGI application" not in server.log()
    finally:
        server.stop()
