"""Waiting on the in-process app against deadlines: its first prices, its WebSocket frames.

`WebSocketTestSession.receive` waits forever: a test expecting a message the app never sends
would hang the run. `message` bounds the wait (on the session's own portal and stream: Starlette
internals, kept to this one function), and `reply` skips the live updates that interleave with
request replies (the simulated feed prices subscribed symbols every 0.2 s).
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import orjson
from starlette.testclient import WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from tests.support import wait_for
from tests.unit.asgi import TestClient

# Live updates, and the snapshot that follows a `subscribed` (absent when nothing is priced yet).
UNASKED = frozenset({"quote", "batch", "status", "snapshot"})


def message(ws: WebSocketTestSession, within: float = 5.0) -> str | bytes:
    """The next frame's data; raises WebSocketDisconnect (with the code) on the close frame."""

    async def bounded() -> Any:
        with anyio.fail_after(within):
            return await ws._send_rx.receive()

    event = ws.portal.call(bounded)
    if event["type"] == "websocket.close":
        raise WebSocketDisconnect(event.get("code", 1000), event.get("reason"))
    data: str | bytes = event.get("text") or event["bytes"]
    return data


def receive(ws: WebSocketTestSession, within: float = 5.0) -> dict[str, Any]:
    decoded: dict[str, Any] = orjson.loads(message(ws, within))
    return decoded


def reply(ws: WebSocketTestSession, kind: str, within: float = 5.0) -> dict[str, Any]:
    """The next message of type `kind`, skipping live updates and snapshots (unless asked for);
    any other message fails."""
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        got = receive(ws, left)
        if got["type"] in UNASKED and got["type"] != kind:
            continue
        assert got["type"] == kind, got
        return got
    raise AssertionError(f"no {kind} within {within} s")


def close_code(ws: WebSocketTestSession, within: float = 5.0) -> int:
    """Read until the server's close frame; its code."""
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        try:
            message(ws, left)
        except WebSocketDisconnect as closed:
            return closed.code
    raise AssertionError(f"no close frame within {within} s")


def wait_priced(client: TestClient, *symbols: str) -> None:
    """Until the app has a quote of each of `symbols` (the first fetch runs as the app starts)."""

    def priced() -> bool:
        body = client.get("/api/quotes", params={"symbols": ",".join(symbols)}).json()
        return not body["missing"] and len(body["quotes"]) == len(symbols)

    wait_for(priced, 5, f"quotes of {symbols}")
