"""Our framing matches what websockets itself would put on the wire."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode

from app.ws.framing import text_frame


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 100_000])
def test_text_frame_is_websockets_own_unmasked_text_frame(size: int) -> None:
    text = ("é" * size)[: size // 2] + "x" * (size - size // 2)
    expected = Frame(Opcode.TEXT, text.encode()).serialize(mask=False)
    assert text_frame(text.encode()) == expected
