"""A connection's outbox: what the server owes one client, bounded and conflated.

The hub only ever calls the non-blocking `offer*` methods; the connection's own writer task awaits
`wait()` and sends what `drain()` returns. Live quotes are kept as the latest text per symbol, so a
client that falls behind gets the newest price, never a backlog. Control messages (acks, errors,
snapshots, status) keep their order; a client that lets more than `max_control` of them pile up is
flagged `overflowed` and its writer closes it with 1013.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from app.feeds.base import FeedStatus
from app.models import Quote

FrameKind = Literal["snapshot", "batch"]


@dataclass(frozen=True, slots=True)
class WireFormat:
    """How quotes look on one kind of connection (JSON for API clients, HTML for htmx pages)."""

    name: str
    encode: Callable[[Quote], str]
    frame: Callable[[FrameKind, Sequence[str]], str]
    # A control message telling the client the data state; None if this format has no such message.
    status: Callable[[FeedStatus], str | None]
    # (symbol, reason, source): the feed cannot price a subscribed symbol; None: not told.
    rejected: Callable[[str, str, str | None], str | None] = lambda symbol, reason, source: None
    # The drain notice ("reconnect after this many ms"); None if this format has none.
    reconnect: Callable[[int], str | None] = lambda delay_ms: None


class Outbox:
    def __init__(self, fmt: WireFormat, max_control: int = 256) -> None:
        self.fmt = fmt
        self.symbols: set[str] = set()
        self.overflowed = False
        # Set by `close_after`: the writer sends what is queued, then closes with this code.
        self.closing: tuple[int, str] | None = None
        self.conflated = 0
        # `published_at` (ms) of the oldest update in the last drained batch; 0 when none.
        self.batch_published_at = 0
        self._pending_since = 0
        self._max_control = max_control
        self._control: deque[str] = deque()
        self._pending: dict[str, str] = {}
        self._versions: dict[str, tuple[int, int]] = {}
        self._wake = asyncio.Event()
        # The fast path's non-blocking frame write (app.ws.fastpath), set by the writer. With it,
        # live updates are not handed to the writer task: the hub calls `flush` once per bus
        # message for every outbox it touched, and only a write the socket declines (or a
        # writer busy with an awaited send) wakes the writer.
        self.direct: Callable[[str], bool] | None = None
        self.busy = False  # the writer is inside an awaited send: keep order, let it drain
        self.queued = False  # on the hub's to-flush list

    def offer(self, quote: Quote, text: str, version: tuple[int, int] | None = None) -> bool:
        """Queue a live update unless the client already has this version or a newer one.

        `version` is `(quote.epoch, quote.seq)`, passed in by a caller that offers one quote to
        thousands of outboxes. True if queued. The hot path of the fan-out: kept inline."""
        symbol = quote.symbol
        if version is None:
            version = (quote.epoch, quote.seq)
        current = self._versions.get(symbol)
        if symbol not in self.symbols or (current is not None and version <= current):
            return False
        self._versions[symbol] = version
        pending = self._pending
        if symbol in pending:
            self.conflated += 1
        elif not pending:
            self._pending_since = quote.published_at
        pending[symbol] = text
        if self.direct is None:
            self._wake.set()
        return True

    def flush(self) -> int:
        """Write pending live updates now as one frame: their oldest `published_at` (ms) if
        written directly, else 0 (nothing pending, or the writer task was woken to send it)."""
        if not self._pending:
            return 0
        if self.direct is None or self.busy or self._control or self.closing or self.overflowed:
            self._wake.set()
            return 0
        if not self.direct(self.fmt.frame("batch", list(self._pending.values()))):
            self._wake.set()  # the socket is paused: the writer's awaited send takes over
            return 0
        self._pending.clear()
        return self._pending_since

    def offer_snapshot(self, quotes: Sequence[Quote]) -> None:
        """Queue a snapshot frame of those `quotes` the client does not have yet."""
        texts = []
        for quote in quotes:
            if self._take(quote):
                # The snapshot is newer than any pending update of this symbol: drop that one.
                self._pending.pop(quote.symbol, None)
                texts.append(self.fmt.encode(quote))
        if texts:
            self.offer_control(self.fmt.frame("snapshot", texts))

    def offer_control(self, text: str | None) -> None:
        if text is None:
            return
        if len(self._control) >= self._max_control:
            self.overflowed = True
        else:
            self._control.append(text)
        self._wake.set()

    def close_after(self, code: int, reason: str) -> None:
        """Ask the writer to close once everything queued so far has been sent."""
        if self.closing is None:
            self.closing = (code, reason)
        self._wake.set()

    def forget(self, symbols: Sequence[str]) -> None:
        """After unsubscribe: drop pending updates and versions of `symbols`."""
        for symbol in symbols:
            self._pending.pop(symbol, None)
            self._versions.pop(symbol, None)

    async def wait(self) -> None:
        await self._wake.wait()

    def drain(self) -> list[str]:
        """Everything owed now, in order: control messages, then one frame of live quotes."""
        self._wake.clear()
        frames = list(self._control)
        self._control.clear()
        self.batch_published_at = 0
        if self._pending:
            frames.append(self.fmt.frame("batch", list(self._pending.values())))
            self._pending.clear()
            self.batch_published_at = self._pending_since
        return frames

    def _take(self, quote: Quote) -> bool:
        version = (quote.epoch, quote.seq)
        current = self._versions.get(quote.symbol)
        if quote.symbol not in self.symbols or (current is not None and version <= current):
            return False
        self._versions[quote.symbol] = version
        return True
