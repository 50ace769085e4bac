"""A stand-in for a transport's fast path (app.ws.transport), for core tests: it records what
was written, or declines while paused, and "frames" a payload by tagging it."""

from __future__ import annotations

from app.core.outbox import OnDirect


def tag(payload: bytes) -> bytes:
    return b"F:" + payload


def untag(frame: bytes) -> bytes:
    assert frame.startswith(b"F:")
    return frame[2:]


class Socket:
    """Takes `room` frames (None: no limit) before it pauses, as a transport's buffer fills; it
    tells its watcher (app.core.outbox.Sink.watch) whenever it pauses or resumes."""

    prepare = staticmethod(tag)

    def __init__(self, room: int | None = None) -> None:
        self.frames: list[bytes] = []
        self._paused = False
        self._room = room
        self._on_direct: OnDirect | None = None

    @property
    def room(self) -> int | None:
        return self._room

    @room.setter
    def room(self, room: int | None) -> None:
        self._room = room
        self._tell()

    @property
    def paused(self) -> bool:
        return self._paused or self.room == 0

    @paused.setter
    def paused(self, paused: bool) -> None:
        self._paused = paused
        self._tell()

    def _tell(self) -> None:
        if self._on_direct is not None:
            self._on_direct(None if self.paused else self._direct)

    def watch(self, on_direct: OnDirect | None) -> None:
        self._on_direct = on_direct
        self._tell()

    def _direct(self, frame: bytes) -> None:
        assert not self.paused, "written through a direct write it was told is gone"
        self.frames.append(frame)
        if self._room is not None:
            self._room -= 1
            if self._room == 0:
                self._tell()

    def write(self, frame: bytes) -> bool:
        if self.paused:
            return False
        self._direct(frame)
        return True
