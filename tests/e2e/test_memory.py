"""A closed connection leaves no cyclic garbage on the server, so freezing live connections
(GC_TUNING) does not leak them: real uvicorn on uvloop with the fast path (in a thread of this
process, so the collector can be asked), real WebSocket clients."""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import threading
import tracemalloc
from collections import Counter

import orjson
import uvicorn
import uvloop
from websockets.asyncio.client import ClientConnection, connect

from app.launch import WS_PROTOCOL, plan
from app.main import create_app
from app.settings import Settings
from tests.support import eventually, free_port, http_raw, wait_for

CLIENTS = 50
# What one server-side connection is made of (the clients' own objects are ignored: they run on
# the test's asyncio loop, whose selector transports hold a bound method of themselves).
SERVER_KINDS = {
    "FastProtocol", "HttpToolsProtocol", "HttpRequestParser", "TCPTransport", "Outbox",
    "Connection", "WebSocket", "Task", "coroutine", "ServerProtocol", "TokenBucket", "Flag",
    "Inbox",
}  # fmt: skip


async def test_closed_connections_leave_no_cyclic_garbage_on_the_server() -> None:
    port = free_port()
    settings = Settings.from_env({"PORT": str(port), "GC_TUNING": "off", "FETCH_INTERVAL": "0.2"})
    config = uvicorn.Config(
        create_app(settings), port=port, ws="app.ws.fastpath:FastProtocol",
        ws_per_message_deflate=False, log_level="warning", lifespan="on",
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=uvloop.run, args=(server.serve(),), daemon=True)
    thread.start()
    clients: list[ClientConnection] = []
    try:
        wait_for(lambda: server.started, 10, "uvicorn to start")
        for _ in range(CLIENTS):
            ws = await connect(f"ws://127.0.0.1:{port}/ws")
            await ws.send(orjson.dumps({"action": "subscribe", "symbols": ["TCS", "INFY"]}))
            clients.append(ws)
        for ws in clients:  # welcome, subscribed, snapshot: each connection is fully set up
            for _ in range(3):
                await ws.recv()
        gc.collect()  # GC_TUNING freezes what is alive after a full collection: do the same
        gc.freeze()
        try:
            for ws in clients:
                await ws.close()
            clients.clear()

            async def all_gone() -> bool:
                return not server.server_state.connections

            await eventually(all_gone, 10, "the server to close every connection")
        finally:
            gc.unfreeze()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            gc.collect()
            kinds = Counter(type(o).__name__ for o in gc.garbage)
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
        left = {kind: n for kind, n in kinds.items() if kind in SERVER_KINDS}
        assert left == {}, f"server objects of closed connections left in cycles: {left}"
    finally:
        server.should_exit = True
        thread.join(30)


def test_refused_http_requests_leave_no_cyclic_garbage() -> None:
    # A refusal raised inside the HTTP parser's callbacks used to keep its protocol in a cycle
    # (exception -> traceback -> frames -> exception); GC_TUNING freezes such cycles for good,
    # so a flood of refused requests grew the process by ~12 MB per 50,000 for ever.
    port = free_port()
    settings = Settings.from_env({"PORT": str(port), "GC_TUNING": "off", "CLIENT_HTTP_RATE": "1"})
    config = uvicorn.Config(
        create_app(settings), port=port, http="app.http_limits:LimitedHttpProtocol",
        log_level="warning", lifespan="on",
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=uvloop.run, args=(server.serve(),), daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 10, "uvicorn to start")
        refused = [
            b"GET /api/quotes HTTP/1.1\r\nConnection: close\r\n\r\n",  # 429 past the burst
            b"GET /api/quotes?symbols=" + b"A," * 5000 + b" HTTP/1.1\r\n\r\n",  # 414
            b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 3000 + b"\r\n",  # 431
        ]
        answers = [http_raw(port, request) for request in refused * 20]
        assert {a[9:12] for a in answers} >= {b"429", b"414", b"431"}
        wait_for(lambda: not server.server_state.connections, 10, "every connection closed")
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            gc.collect()
            kinds = Counter(type(o).__name__ for o in gc.garbage)
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
        # (Frames alone are no evidence: other tests in this process leave some behind.)
        left = {k: n for k, n in kinds.items() if k in {"LimitedHttpProtocol", "Refused"}}
        assert left == {}, f"refused requests left in cycles: {left}"
    finally:
        server.should_exit = True
        thread.join(30)


# ---- memory per idle connection ---------------------------------------------------------------

IDLE = 400
WARM = 50
# Python bytes the server keeps per idle WebSocket (issue 12: <= 10 KB of RSS per connection at
# 10,000). Measured 8.9 KB on the fast path; 20+ KB before the handshake's headers, the per-server
# attributes and most coroutine frames stopped being kept per connection.
IDLE_BYTES_BOUND = 11 * 1024
# What a browser sends with an upgrade (on top of the handshake's own headers): none of it may
# stay with the connection once it is open.
BROWSER_HEADERS = [
    ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/131.0.0.0 Safari/537.36"),
    ("Accept-Encoding", "gzip, deflate, br, zstd"),
    ("Accept-Language", "en-US,en;q=0.9,hi;q=0.8"),
    ("Cache-Control", "no-cache"),
    ("Pragma", "no-cache"),
    ("Cookie", "stocktracker_theme=dark; _ga=GA1.1.1234567890.1733000000; "
     "_ga_ABCDEF=GS1.1.1733000000.1.1.1733000100.0.0.0; consent=yes"),
    ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"),
    ("Sec-Fetch-Dest", "empty"),
    ("Sec-Fetch-Mode", "websocket"),
    ("Sec-Fetch-Site", "same-origin"),
]  # fmt: skip

# The clients run in a child process: their own objects must not count. Each one pings once
# after the welcome, so by the time it has its pong the server has finished setting it up.
IDLE_CLIENTS = r"""
import asyncio, json, sys
from websockets.asyncio.client import connect
async def main(url, origin, n, headers):
    conns, sem = [], asyncio.Semaphore(50)
    async def one():
        async with sem:
            ws = await connect(url, origin=origin, additional_headers=headers,
                               open_timeout=60, ping_interval=None, compression=None)
            await ws.recv()
            await ws.send('{"action": "ping"}')
            while json.loads(await ws.recv()).get("type") != "pong":
                pass
            conns.append(ws)
    await asyncio.gather(*(one() for _ in range(n)))
    print("ready", len(conns), flush=True)
    await asyncio.sleep(3600)
asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])))
"""


async def _idle_clients(port: int, n: int) -> asyncio.subprocess.Process:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", IDLE_CLIENTS, f"ws://127.0.0.1:{port}/ws",
        f"http://127.0.0.1:{port}", str(n), json.dumps(BROWSER_HEADERS),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert child.stdout is not None
    line = await asyncio.wait_for(child.stdout.readline(), 120)
    assert line.split() == [b"ready", str(n).encode()], line
    return child


async def test_an_idle_websocket_keeps_under_11_kb_of_python_objects_on_the_server() -> None:
    """Real uvicorn with the app's own serving plan (the fast path) on uvloop, in a thread of
    this process so that tracemalloc sees everything the server allocates; real clients in a
    child process, with a browser's headers. Traced bytes kept per idle connection, past a warm
    start (caches filled by the first connections are not per connection)."""
    port = free_port()
    env = {
        "PORT": str(port), "GC_TUNING": "off", "FETCH_INTERVAL": "2", "CLIENT_HTTP_RATE": "0",
        "MAX_CONNECTIONS_PER_CLIENT": "100000",
    }  # fmt: skip
    settings = Settings.from_env(env)
    options = dict(plan(settings).options)
    options.pop("workers")
    options["log_level"] = "warning"
    assert options["ws"] == WS_PROTOCOL
    server = uvicorn.Server(uvicorn.Config(create_app(settings), lifespan="on", **options))
    thread = threading.Thread(target=uvloop.run, args=(server.serve(),), daemon=True)
    thread.start()
    children: list[asyncio.subprocess.Process] = []
    try:
        wait_for(lambda: server.started, 10, "uvicorn to start")
        children.append(await _idle_clients(port, WARM))
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            children.append(await _idle_clients(port, IDLE))
            gc.collect()
            per_connection = (tracemalloc.get_traced_memory()[0] - before) / IDLE
        finally:
            tracemalloc.stop()
        assert len(server.server_state.connections) >= WARM + IDLE
        assert per_connection <= IDLE_BYTES_BOUND, f"{per_connection / 1024:.1f} KB per connection"
    finally:
        for child in children:
            child.kill()
            await child.wait()
        server.should_exit = True
        thread.join(30)
