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

from typing import cast

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request
from websockets.protocol import State

EXTENSION = "stocktracker.write_frame"


class FastProtocol(WebSocketsSansIOProtocol):
    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        if self.response.status_code == 101:
            extensions = cast(dict[str, object], self.scope["extensions"])
            extensions[EXTENSION] = self.write_frame

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
