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

`RepeatFilter` does the same for the warnings an outage repeats on every tick (Redis down: "fetch
tick failed", "subscription report failed", "keeping last known subscriptions", once a second
each): per logger and message format, one line a window, then the count, written by the logger
that wrote the line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

WINDOW = 60.0
# On a record this budget already let through (RepeatFilter passes it as it is).
BUDGETED = {"budgeted": True}
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
    logger: logging.Logger
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

    def note(self, kind: str, message: str, logger: logging.Logger | None = None) -> None:
        """Something worth knowing about once in a while (not every time), written by `logger`
        (this budget's own by default)."""
        line = self.admit(kind, message, logger)
        if line is not None:
            (logger or self._log).warning("%s", line, extra=BUDGETED)

    def admit(self, kind: str, message: str, logger: logging.Logger | None = None) -> str | None:
        """The line to write now for this note of `kind` (`message`, cut, with the count of those
        suppressed before it), or None: counted, to be written later."""
        now = self._clock()
        message = message[:MAX_MESSAGE]
        state = self._kinds.get(kind)
        if state is not None and now - state.window_start < self._window:
            state.suppressed += 1
            state.last_message = message
            return None
        suppressed = state.suppressed if state is not None else 0
        self._kinds[kind] = _Kind(now, logger or self._log)
        return message + self._tail(suppressed)

    def flush(self) -> None:
        """Write the counts of windows that ended with notes suppressed."""
        now = self._clock()
        for kind, state in list(self._kinds.items()):
            if now - state.window_start < self._window:
                continue
            if state.suppressed:
                state.logger.warning(
                    "%s%s", state.last_message, self._tail(state.suppressed), extra=BUDGETED
                )
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


class RepeatFilter(logging.Filter):
    """On a logger of ours: its WARNING lines through `noise`, keyed by the message's format, so
    an outage that repeats one warning every tick writes it once a window, with the count."""

    def __init__(self, noise: ClientNoise) -> None:
        super().__init__()
        self._noise = noise

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING or getattr(record, "budgeted", False):
            return True
        kind = f"{record.name}:{record.msg}"[:MAX_MESSAGE]
        line = self._noise.admit(kind, record.getMessage(), logging.getLogger(record.name))
        if line is None:
            return False
        record.msg, record.args = line, None
        return True


# Loggers whose warnings an outage repeats every tick (fetch loop, bus, history reads).
REPEATING_LOGGERS = (
    "app.fetcher", "app.core.hub", "app.core.subscriptions", "app.core.latest",
    "app.core.heartbeat", "app.pubsub.redis", "app.feeds.chain", "app.feeds.http", "app.history",
    "app.alerts", "app.alerts.evaluator", "app.alerts.delivery", "app.alerts.redis_store",
)  # fmt: skip
