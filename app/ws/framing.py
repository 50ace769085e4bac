"""Server-side WebSocket framing (RFC 6455 section 5.2), for frames written straight to a socket.

Server frames are not masked: a 2-10 byte header, then the payload. The fan-out frames one batch
once and writes the same bytes to every client that shares it (app.core.fanout, through
app.ws.transport).
"""

from __future__ import annotations

import struct

_FIN_TEXT = 0x81  # FIN bit and opcode 1 (text)
_HEADER_16 = struct.Struct("!BBH").pack
_HEADER_64 = struct.Struct("!BBQ").pack


def text_frame(payload: bytes) -> bytes:
    """One unmasked, final text frame carrying `payload` (UTF-8 text): a 2, 4 or 10 byte header
    by its size. (No helper call for the header: the fan-out frames each client's tick.)"""
    size = len(payload)
    if size < 126:
        return bytes((_FIN_TEXT, size)) + payload
    if size < 1 << 16:
        return _HEADER_16(_FIN_TEXT, 126, size) + payload
    return _HEADER_64(_FIN_TEXT, 127, size) + payload
