"""A stand-in for a transport's fast path (app.ws.transport), for core tests: it records what
was written, or declines while paused, and "frames" a payload by tagging it."""

from __future__ import annotations


def tag(payload: bytes) -> bytes:
    return b"F:" + payload


def untag(frame: bytes) -> bytes:
    assert frame.startswith(b"F:")
    return frame[2:]


class Socket:
    prepare = staticmethod(tag)

    def __init__(self, room: int | None = None) -> None:
        self.frames: list[bytes] = []
        self.paused = False
        self.room = room  # frames it takes before it pauses (None: no limit)

    def write(self, frame: bytes) -> bool:
        if self.paused or self.room == 0:
            return False
        if self.room is not None:
            self.room -= 1
        self.frames.append(frame)
        return True
