"""A closed connection leaves no cyclic garbage on the server, so freezing live connections
(GC_TUNING) does not leak them: real uvicorn on uvloop with the fast path (in a thread of this
process, so the collector can be asked), real WebSocket clients."""

from __future__ import annotations

import gc
import threading
from collections import Counter

import orjson
import uvicorn
import uvloop
from websockets.asyncio.client import ClientConnection, connect

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
