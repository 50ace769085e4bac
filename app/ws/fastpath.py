"""The WebSocket fast path: uvicorn's own protocol class plus one non-blocking send.

Served with `WS_FAST_PATH=on` (`python -m app`) or `uvicorn --ws app.ws.fastpath:FastProtocol`
(uvicorn takes a protocol class by import path: a supported extension point).

Every quote frame on the plain ASGI path goes through Starlette's `send_text`, uvicorn's `send`
coroutine and websockets' sans-I/O framing; profiles of the tick workload put a fifth of the
server's CPU there. This class is uvicorn's `WebSocketsSansIOProtocol` unchanged (handshake,
origin refusal, ping/pong, max size, close handshake, drain) plus an ASGI scope extension,
`stocktracker.send_text`: a plain function that frames a text payload (server frames are not
masked: a 2-10 byte header, then the UTF-8 bytes) and writes it to the transport at once. It
returns False, writing nothing, whenever it must not write now: before the handshake completes,
once a close was sent or received, or while the transport is paused by flow control. The caller
then uses the ordinary awaited `websocket.send`, whose timeout closes a slow consumer with 1013,
so backpressure and close codes stay uvicorn's.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import cast

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request
from websockets.protocol import State

EXTENSION = "stocktracker.send_text"
SendText = Callable[[str], bool]

_FIN_TEXT = 0x81  # FIN bit and opcode 1 (text)


def frame_text(text: str) -> bytes:
    """One unmasked, final text frame (RFC 6455 section 5.2) carrying `text`."""
    payload = text.encode()
    size = len(payload)
    if size < 126:
        return bytes((_FIN_TEXT, size)) + payload
    if size < 1 << 16:
        return struct.pack("!BBH", _FIN_TEXT, 126, size) + payload
    return struct.pack("!BBQ", _FIN_TEXT, 127, size) + payload


class FastProtocol(WebSocketsSansIOProtocol):
    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        if self.response.status_code == 101:
            extensions = cast(dict[str, object], self.scope["extensions"])
            extensions[EXTENSION] = self.send_text_now

    def send_text_now(self, text: str) -> bool:
        """Write `text` as one frame now, or return False if the ASGI send must handle it."""
        if (
            not self.handshake_complete
            or self.close_sent
            or self.disconnected
            or self.conn.state is not State.OPEN
            or not self.writable.is_set()
            or self.transport.is_closing()
        ):
            return False
        self.transport.write(frame_text(text))
        return True
