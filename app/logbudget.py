"""Log lines that clients cause: at most one line per kind per window, with a count.

Anything a client can trigger at will must not cost a log line each time: an invalid UTF-8 frame
used to write an ERROR with a six-line traceback, so a client could flood the log (and the disk,
and the log pipeline's bill). `ClientNoise.note(kind, message)` writes the first note of a kind
in each window as one WARNING line; the others in that window are only counted, and the count is
written with the next line of that kind or by `flush()` (run every window by a supervised loop):
`invalid UTF-8 in a WebSocket text frame (and 4,311 more in the last 60 s)`.

`ClientNoiseFilter` routes uvicorn's own per-client lines (malformed requests, invalid frames,
unsupported upgrades) through the same budget. Kinds are fixed strings from our code, so memory
stays bounded whatever clients send; messages are cut to `MAX_MESSAGE` characters.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

WINDOW = 60.0
MAX_MESSAGE = 200

# uvicorn's lines that a client causes at will -> our kind for them.
UVICORN_CLIENT_LINES = {
    "Invalid HTTP request received.": "bad_request",
    "Invalid UTF-8 sequence received from client.": "invalid_utf8",
    "Unsupported upgrade request.": "unsupported_upgrade",
    "Exceeded concurrency limit.": "too_many_connections",
}


@dataclass(slots=True)
class _Kind:
    window_start: float
    suppressed: int = 0
    last_message: str = ""


class ClientNoise:
    def __init__(
        self,
        logger: logging.Logger,
        window: float = WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._window = window
        self._clock = clock
        self._kinds: dict[str, _Kind] = {}

    def note(self, kind: str, message: str) -> None:
        """A client did something worth knowing about once in a while (not every time)."""
        now = self._clock()
        message = message[:MAX_MESSAGE]
        state = self._kinds.get(kind)
        if state is not None and now - state.window_start < self._window:
            state.suppressed += 1
            state.last_message = message
            return
        suppressed = state.suppressed if state is not None else 0
        self._kinds[kind] = _Kind(now)
        self._log.warning("%s%s", message, self._tail(suppressed))

    def flush(self) -> None:
        """Write the counts of windows that ended with notes suppressed."""
        now = self._clock()
        for kind, state in list(self._kinds.items()):
            if now - state.window_start < self._window:
                continue
            if state.suppressed:
                self._log.warning("%s%s", state.last_message, self._tail(state.suppressed))
            del self._kinds[kind]

    def _tail(self, suppressed: int) -> str:
        if not suppressed:
            return ""
        return f" (and {suppressed:,} more like it in the last {self._window:g} s)"

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._window)
            self.flush()


class ClientNoiseFilter(logging.Filter):
    """On uvicorn's error logger: its per-client lines go through `noise` instead."""

    def __init__(self, noise: ClientNoise) -> None:
        super().__init__()
        self._noise = noise

    def filter(self, record: logging.LogRecord) -> bool:
        kind = UVICORN_CLIENT_LINES.get(record.msg) if isinstance(record.msg, str) else None
        if kind is None:
            return True
        self._noise.note(kind, f"client: {record.msg}")
        return False


# One per process, like a logger: the HTTP protocol and the WebSocket code note into it.
client_noise = ClientNoise(logging.getLogger("app.clients"))
