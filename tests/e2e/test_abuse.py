"""One WebSocket client must never hurt another: replies are bounded by their requests, a
request's bytes are charged to the client's budget, a client's queue is bounded in bytes, its
mistakes cost the log one line a minute, and a close between fragments is answered as RFC 6455
says. Real `python -m app` on the Procfile's fast path, real and raw WebSocket clients."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.e2e.conftest import serve
from tests.support import (
    AppServer,
    client_frame,
    close_code,
    quotes_in,
    raw_websocket,
    recv_json,
    server_frames,
    wait_for,
)

TEXT, CLOSE, CONTINUATION = 1, 8, 0


@pytest.fixture(scope="module")
def app_server() -> Iterator[AppServer]:
    yield from serve({"MAX_MESSAGE_BYTES": "65536", "MAX_SYMBOLS_PER_CONNECTION": "50"})


def test_a_close_between_fragments_is_answered_with_1000(app_server: AppServer) -> None:
    # Autobahn 7.1.5: control frames may come between a message's fragments (RFC 6455 5.4).
    sock = raw_websocket(app_server.port)
    with sock:
        sock.sendall(
            client_frame(TEXT, b'{"action":', fin=False)
            + client_frame(CLOSE, (1000).to_bytes(2, "big"))
            + client_frame(CONTINUATION, b'"ping"}')
        )
        assert close_code(server_frames(sock)) == 1000


def test_invalid_utf8_costs_one_log_line_a_minute(app_server: AppServer) -> None:
    for _ in range(50):
        with raw_websocket(app_server.port) as sock:
            sock.sendall(client_frame(TEXT, b"\xff\xfe not utf-8"))
            assert close_code(server_frames(sock)) == 1007
    lines = [line for line in app_server.log().splitlines() if "UTF-8" in line]
    assert len(lines) == 1, lines
    assert "Traceback" not in app_server.log()


async def reply_to(ws: ClientConnection, request: bytes) -> bytes:
    await ws.send(request)
    while True:
        raw = await asyncio.wait_for(ws.recv(decode=False), 10)
        if orjson.loads(raw)["type"] == "subscribed":
            return raw


async def test_a_reply_is_never_much_larger_than_its_request(app_server: AppServer) -> None:
    repeated = orjson.dumps({"action": "subscribe", "symbols": ["TCS"] * 10_900})
    junk = orjson.dumps({"action": "subscribe", "symbols": [f"?{i}" for i in range(6000)]})
    async with connect(app_server.ws_url, max_size=None) as ws:
        await recv_json(ws)
        first = await reply_to(ws, repeated)
        assert len(first) <= 2 * len(repeated), (len(first), len(repeated))
        ack = orjson.loads(first)
        assert ack["accepted"] == ["TCS"]
        assert ack["rejected"][0]["code"] == "duplicate"
        assert ack["rejected"][0]["count"] == 100 - 1  # 100 items read, the rest only counted
        assert ack["omitted"] == 10_900 - 100
        second = await reply_to(ws, junk)
        assert len(second) <= 2 * len(junk), (len(second), len(junk))
        ack = orjson.loads(second)
        listed = sum(r.get("count", 1) for r in ack["rejected"])
        assert listed + ack.get("omitted", 0) == 6000  # every item accounted for


async def test_large_requests_spend_the_message_budget_faster(app_server: AppServer) -> None:
    big = orjson.dumps({"action": "subscribe", "symbols": [f"?{i}" for i in range(6000)]})
    assert len(big) > 40_000  # 11 tokens of the budget, against 1 for a small message
    async with connect(app_server.ws_url, max_size=None) as ws:
        await recv_json(ws)
        for _ in range(10):  # 10 messages are well within the burst of 40 small ones
            await ws.send(big)
        types: list[str] = []
        while len(types) < 10:
            message = await recv_json(ws)
            types.append(message["type"])
            if message["type"] == "error":
                assert message["code"] == "rate_limited"
                break
        assert "error" in types, types


@pytest.fixture(scope="module")
def patient_server() -> Iterator[AppServer]:
    # Slow consumers are given two minutes: only the byte bound can close one sooner.
    yield from serve({
        "MAX_MESSAGE_BYTES": "65536", "MAX_QUEUED_BYTES": "65536", "SEND_TIMEOUT": "120",
        "CLIENT_RATE": "100000", "FETCH_INTERVAL": "0.1", "MAX_SYMBOLS_PER_CONNECTION": "2000",
    })  # fmt: skip


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_a_client_that_never_reads_is_closed_once_its_queue_passes_the_byte_bound(
    patient_server: AppServer,
) -> None:
    server = patient_server
    assert server.proc is not None
    # Each ~60 KB request gets a ~120 KB reply (4,000 bad items read, listed up to twice the
    # request's size): past the kernel's buffers, a few of them pass the 64 KB bound, while
    # the old bound (256 queued messages) let each client hold 30 MB.
    items = [f"?{i:011d}" for i in range(4000)]
    request = client_frame(TEXT, orjson.dumps({"action": "subscribe", "symbols": items}))
    async with connect(server.ws_url) as honest:
        await recv_json(honest)
        await honest.send(orjson.dumps({"action": "subscribe", "symbols": ["TCS"]}))
        before = rss_mb(server.proc.pid)
        # Watching live symbols too: quotes keep arriving for them after they overflow.
        abusers = [
            raw_websocket(server.port, rcvbuf=4096, path="/ws?symbols=TCS,INFY,RELIANCE")
            for _ in range(4)
        ]
        sent = 0
        try:
            for sock in abusers:
                sock.setblocking(False)

            unsent = {sock: b"" for sock in abusers}  # the rest of a partly sent frame

            def all_dropped() -> bool:
                nonlocal sent
                for sock in list(unsent):
                    try:
                        for _ in range(10):  # as fast as the server reads
                            unsent[sock] = unsent[sock] or request
                            unsent[sock] = unsent[sock][sock.send(unsent[sock]) :]
                            sent += not unsent[sock]
                    except BlockingIOError:
                        pass  # the server is not reading it either (yet)
                    except OSError:
                        del unsent[sock]  # reset or closed by the server
                return not unsent

            wait_for(all_dropped, 30, "the server to drop clients that never read")
        finally:
            for sock in abusers:
                sock.close()
        grown = rss_mb(server.proc.pid) - before
        assert grown < 40, f"the server grew by {grown:.0f} MB for 4 clients"
        got = 0
        while got < 3:  # the honest client never noticed
            got += len(quotes_in(await recv_json(honest)))
    assert sent > 4
    # Each counted once, however many quotes came for it while it was being closed.
    assert "stocktracker_slow_client_closes_total 4.0" in server.metrics_text()


def test_a_client_that_keeps_sending_after_the_close_frame_is_cut_off() -> None:
    # A draining server closes with 1012 and then reads on, waiting for the client's close
    # reply; a client that sends more than twice the largest message instead is disconnected
    # at once rather than read until the close times out.
    server = AppServer({"DRAIN_GRACE": "10", "MAX_MESSAGE_BYTES": "65536"})
    server.start()
    assert server.proc is not None
    try:
        sock = raw_websocket(server.port)
        with sock:
            server.proc.send_signal(signal.SIGTERM)
            assert close_code(server_frames(sock, within=10, until_close_frame=True)) == 1012
            junk = client_frame(TEXT, b"x" * 60_000)
            sent, deadline = 0, time.monotonic() + 5
            with pytest.raises(OSError):  # reset (or a broken pipe) by the server
                while time.monotonic() < deadline:
                    sock.sendall(junk)
                    sent += 1
            assert sent < 100, f"the server read {sent} frames after its close"
            assert server.proc.poll() is None  # still draining: the cut was the rule's
    finally:
        server.stop()
