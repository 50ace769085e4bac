"""The WebSocket fast path: uvicorn's own protocol class plus one non-blocking frame write.

Served with `WS_FAST_PATH=on` (`python -m app`) or `uvicorn --ws app.ws.fastpath:FastProtocol`
(uvicorn takes a protocol class by import path: a supported extension point).

Every quote frame on the plain ASGI path goes through Starlette's `send_text`, uvicorn's `send`
coroutine and websockets' sans-I/O framing, once per client; profiles of the tick workload put a
fifth of the server's CPU there. This class is uvicorn's `WebSocketsSansIOProtocol` unchanged
(handshake, origin refusal, ping/pong, max size, close handshake, drain) plus an ASGI scope
extension, `stocktracker.write_frame`: a plain function that writes one complete, already framed
WebSocket frame (`app.ws.framing`) to the transport at once, so the fan-out frames a batch once and
writes the same bytes to every client that shares it. It returns False, writing nothing, whenever
it must not write now: before the handshake completes, once a close was sent or received, or while
the transport is paused by flow control. The caller then uses the ordinary awaited
`websocket.send`, whose timeout closes a slow consumer with 1013, so backpressure and close codes
stay uvicorn's.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.http11 import Request
from websockets.protocol import State

from app.ws.lean import Flag, Inbox

EXTENSION = "stocktracker.write_frame"
# Drops the connection at once (TCP reset): for a peer that does not even read a close frame.
ABORT = "stocktracker.abort"


class FastProtocol(WebSocketsSansIOProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        # Memory per idle connection: the same interfaces, without asyncio's up-front deques.
        self.queue = Inbox()  # type: ignore[assignment]
        self.writable = Flag()  # type: ignore[assignment]
        self.writable.set()

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        if self.response.status_code == 101:
            extensions = cast(dict[str, object], self.scope["extensions"])
            extensions[EXTENSION] = self.write_frame
            extensions[ABORT] = self.abort

    def abort(self) -> None:
        if not self.disconnected:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        # The scope would keep this protocol alive through our bound methods (a reference cycle):
        # without them a closed connection is freed at once, not by a later full collection.
        extensions = self.scope.get("extensions") if hasattr(self, "scope") else None
        if extensions is not None:
            extensions.pop(EXTENSION, None)
            extensions.pop(ABORT, None)

    async def send(self, message: Any) -> None:
        await super().send(message)
        if self.handshake_complete and "response" in self.__dict__:
            # The handshake's request and response (and their header maps) are never read again.
            del self.request, self.response

    def write_frame(self, frame: bytes) -> bool:
        """Write `frame` now, or return False if the ASGI send must handle it."""
        if (
            not self.handshake_complete
            or self.close_sent
            or self.disconnected
            or self.conn.state is not State.OPEN
            or not self.writable.is_set()
            or self.transport.is_closing()
        ):
            return False
        self.transport.write(frame)
        return True
