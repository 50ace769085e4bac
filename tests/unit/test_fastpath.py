"""The fast path's framing matches what websockets itself would put on the wire."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode

from app.ws.fastpath import frame_text


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 100_000])
def test_frame_text_is_websockets_own_unmasked_text_frame(size: int) -> None:
    text = ("é" * size)[: size // 2] + "x" * (size - size // 2)
    expected = Frame(Opcode.TEXT, text.encode()).serialize(mask=False)
    assert frame_text(text) == expected
