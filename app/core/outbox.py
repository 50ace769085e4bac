"""A connection's outbox: what the server owes one client, bounded and conflated.

Live quotes normally never stop here: the fan-out (`app.core.fanout`) writes one shared frame
straight to each client's socket through `send_now`. They are queued only when that cannot be
done at once (no fast path, a socket paused by flow control, a writer busy with an awaited send,
control messages waiting ahead of them), and then kept as the latest text per symbol, so a client
that falls behind gets the newest price, never a backlog. Control messages (acks, errors,
snapshots, status) keep their order; a client that lets more than `max_control` of them, or
more than `max_bytes` of text, pile up is flagged `overflowed`: what it was owed is dropped at
once (it is not going to read it) and its writer closes it with 1013. The connection
(app.endpoints.websocket) hears of anything owed through `kick`: it writes it at once with
`write_owed_now`, or starts a writer task that sends what `drain()` returns with awaited sends.

Ordering between quotes is the hub's job: it hands the fan-out only quotes newer than any it
handed out before, and snapshots come from that same newest-known table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from app.core.wire import WireFormat
from app.models import Quote
from app.ws.framing import text_frame
from app.ws.lean import Flag

if TYPE_CHECKING:
    from app.core.fanout import Cohort

# Writes one complete WebSocket frame now; False (nothing written) if it must not write now.
WriteFrame = Callable[[bytes], bool]


class Outbox:
    # Slots: thousands of these, read on the fan-out's hot path.
    __slots__ = (
        "fmt", "symbols", "cohort", "overflowed", "closing", "conflated", "batch_published_at",
        "_pending_since", "_max_control", "_max_bytes", "_control", "_control_bytes", "_pending",
        "_wake", "direct", "busy", "kick", "client",
    )  # fmt: skip

    def __init__(
        self, fmt: WireFormat, max_control: int = 256, max_bytes: int = 256 * 1024
    ) -> None:
        self.fmt = fmt
        self.symbols: set[str] = set()
        self.cohort: Cohort | None = None  # the fan-out's group of outboxes sharing our frames
        self.overflowed = False
        # Set by `close_after`: the writer sends what is queued, then closes with this code.
        self.closing: tuple[int, str] | None = None
        self.conflated = 0
        # `published_at` (ms) of the oldest update in the last drained batch; 0 when none.
        self.batch_published_at = 0
        self._pending_since = 0
        self._max_control = max_control
        self._max_bytes = max_bytes
        self._control: list[str] = []
        self._control_bytes = 0  # characters of text in `_control` (bytes, for ASCII)
        self._pending: dict[str, str] = {}
        self._wake = Flag()
        # The fast path's non-blocking frame write (app.ws.fastpath), set by the connection.
        self.direct: WriteFrame | None = None
        self.busy = False  # the writer is inside an awaited send: keep order, let it drain
        # Called whenever something becomes owed (the connection writes it, or starts its writer).
        self.kick: Callable[[], None] | None = None
        self.client = "?"  # who this is for (app.ws.admission.client_key), for fair admission

    def send_now(self, frame: bytes) -> bool:
        """Write a live frame straight to the socket if nothing is owed before it. The hot path
        of the fan-out: a few attribute reads, then one `transport.write`."""
        if self._pending or self._control or self.busy or self.closing or self.overflowed:
            return False
        direct = self.direct
        return direct is not None and direct(frame)

    def offer(self, symbol: str, text: str, published_at: int) -> None:
        """Queue a live update for the writer task, replacing a pending one of that symbol."""
        if symbol not in self.symbols or self.overflowed:
            return
        pending = self._pending
        if symbol in pending:
            self.conflated += 1
        elif not pending:
            self._pending_since = published_at
        pending[symbol] = text
        self._owed()

    def offer_snapshot(self, quotes: Sequence[Quote]) -> int:
        """Queue a snapshot frame of `quotes` (the newest known, so it supersedes pending ones);
        returns its size (characters)."""
        texts = []
        for quote in quotes:
            if quote.symbol in self.symbols:
                self._pending.pop(quote.symbol, None)
                texts.append(self.fmt.encode(quote))
        if not texts:
            return 0
        frame = self.fmt.frame("snapshot", texts)
        self.offer_control(frame)
        return len(frame)

    def offer_control(self, text: str | None) -> None:
        if text is None or self.overflowed:
            return
        size = self._control_bytes + len(text)
        # One message larger than the bound alone is let through (it is the server's own reply,
        # bounded by its request); a backlog past the bound is not.
        if len(self._control) >= self._max_control or (self._control and size > self._max_bytes):
            self.overflowed = True
            self.clear()  # it will be closed with 1013, not sent any of this
        else:
            self._control.append(text)
            self._control_bytes = size
        self._owed()

    def clear(self) -> None:
        """Drop everything owed (the connection is being closed)."""
        self._control.clear()
        self._control_bytes = 0
        self._pending.clear()

    def close_after(self, code: int, reason: str) -> None:
        """Ask the writer to close once everything queued so far has been sent."""
        if self.closing is None:
            self.closing = (code, reason)
        self._owed()

    def forget(self, symbols: Sequence[str]) -> None:
        """After unsubscribe: drop pending updates of `symbols`."""
        for symbol in symbols:
            self._pending.pop(symbol, None)

    def _owed(self) -> None:
        self._wake.set()
        if self.kick is not None:
            self.kick()

    def owes(self) -> bool:
        return bool(self._control or self._pending)

    async def wait(self) -> None:
        await self._wake.wait()

    def write_owed_now(self) -> tuple[int, bool]:
        """Write what is owed straight to the socket, in order, as far as it takes it:
        (frames written, whether all of it went). The writer task's job when it did not (no
        fast path, a paused socket, a send in progress, a close or an overflow to act on)."""
        self.batch_published_at = 0
        direct = self.direct
        if direct is None or self.busy or self.closing or self.overflowed:
            return 0, not self.owes() and not self.closing and not self.overflowed
        written = 0
        control = self._control
        while control:
            if not direct(text_frame(control[0])):
                return written, False
            self._control_bytes -= len(control.pop(0))
            written += 1
        if self._pending:
            if not direct(text_frame(self.fmt.frame("batch", list(self._pending.values())))):
                return written, False
            self._pending.clear()
            self.batch_published_at = self._pending_since
            written += 1
        self._wake.clear()
        return written, True

    def drain(self) -> list[str]:
        """Everything owed now, in order: control messages, then one frame of live quotes."""
        self._wake.clear()
        frames, self._control = self._control, []
        self._control_bytes = 0
        self.batch_published_at = 0
        if self._pending:
            frames.append(self.fmt.frame("batch", list(self._pending.values())))
            self._pending.clear()
            self.batch_published_at = self._pending_since
        return frames
