"""Server-side WebSocket framing (RFC 6455 section 5.2), for frames written straight to a socket.

Server frames are not masked: a 2-10 byte header, then the payload. The fan-out frames one batch
once and writes the same bytes to every client that shares it (app.core.fanout, through
app.ws.transport).
"""

from __future__ import annotations

import struct

_FIN_TEXT = 0x81  # FIN bit and opcode 1 (text)
_HEADER_16 = struct.Struct("!BBH").pack


def frame_header(size: int) -> bytes:
    """The header of an unmasked, final text frame whose payload is `size` bytes."""
    if size < 126:
        return bytes((_FIN_TEXT, size))
    if size < 1 << 16:
        return struct.pack("!BBH", _FIN_TEXT, 126, size)
    return struct.pack("!BBQ", _FIN_TEXT, 127, size)


def text_frame(payload: bytes) -> bytes:
    """One unmasked, final text frame carrying `payload` (UTF-8 text)."""
    size = len(payload)  # (the common sizes inline: the fan-out frames each client's tick)
    if size < 126:
        return bytes((_FIN_TEXT, size)) + payload
    if size < 1 << 16:
        return _HEADER_16(_FIN_TEXT, 126, size) + payload
    return frame_header(size) + payload
