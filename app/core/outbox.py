"""A connection's outbox: what the server owes one client, bounded and conflated.

Live quotes normally never stop here: the fan-out (app.core.fanout) writes one shared payload
straight to each client's socket with `direct`, the sink's own write, which this outbox holds
only while nothing stands in the way (`_gate`). They are queued only when that cannot be done
at once (no sink, a socket paused by flow control, an awaited send in progress, control messages
waiting ahead of them), and then kept as the latest payload per symbol, so a client that falls
behind gets the newest price, never a backlog. Control messages (acks, errors, snapshots, status)
keep their order; a client that lets more than `max_control` of them, or more than `max_bytes`,
pile up is flagged `overflowed`: what it was owed is dropped at once (it is not going to read it)
and the connection closes it with 1013. The connection (app.endpoints.websocket) hears of
anything owed through `on_owed`: it writes it at once with `write_owed_now`, or starts a writer
task that sends what `drain()` returns with awaited sends.

Everything here is payload bytes; how a payload becomes bytes on a socket (RFC 6455 framing) is
the sink's business, behind app.ws.transport. Ordering between quotes is the hub's job: it hands
the fan-out only quotes newer than any it handed out before, and snapshots come from that same
newest-known table (app.core.latest).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from app.core.wire import WireFormat

WS_1012_SERVICE_RESTART = 1012  # the close code's value; the core imports nothing of Starlette
# A sink's own write of a prepared payload, that cannot decline (see Sink.watch).
Direct = Callable[[bytes], object]
OnDirect = Callable[[Direct | None], None]


class Sink(Protocol):
    """Where a connection's payloads are written without awaiting (a transport's fast path)."""

    @property
    def prepare(self) -> Callable[[bytes], bytes]:
        """The payload as `write` takes it (the transport's framing). One function for every
        sink of a transport, so the fan-out prepares a payload shared by many clients once."""
        ...

    def write(self, prepared: bytes) -> bool:
        """Write now; False (nothing written) when it must not write now (paused, closing)."""
        ...

    def watch(self, on_direct: OnDirect | None) -> None:
        """Call `on_direct` now and whenever that changes: with a `Direct` write while `write`
        would take a payload, with None while it would not; None stops the calls."""
        ...


class Outbox:
    # Slots: thousands of these, read on the fan-out's hot path.
    __slots__ = (
        "fmt", "symbols", "cohort", "_overflowed", "_closing", "conflated", "batch_published_at",
        "_pending_since", "_max_control", "_max_bytes", "_control", "_control_bytes", "_pending",
        "_sink", "_sending", "on_owed", "client", "_note", "direct", "_raw",
    )  # fmt: skip

    def __init__(
        self, fmt: WireFormat, max_control: int = 256, max_bytes: int = 256 * 1024
    ) -> None:
        self.fmt = fmt
        # The symbols watched: changed by app.core.subscriptions alone.
        self.symbols: set[str] = set()
        # The fan-out's group of outboxes sharing our frames (an app.core.fanout.Cohort, kept
        # here for speed; typed loosely so that the outbox does not import the fan-out).
        self.cohort: object = None
        # The fan-out's way to write a live payload now (the hot path): the sink's direct write
        # while nothing stands in the way (see `_gate`), else None. Kept up to date as things
        # change, so a write costs the fan-out one attribute read and one call.
        self.direct: Direct | None = None
        self._raw: Direct | None = None  # the sink's direct write, as it last said
        self._overflowed = False
        self._closing: tuple[int, str] | None = None
        self._sending = False
        self._sink: Sink | None = None
        self.conflated = 0
        # `published_at` (ms) of the oldest update in the last drained batch; 0 when none.
        self.batch_published_at = 0
        self._pending_since = 0
        self._max_control = max_control
        self._max_bytes = max_bytes
        self._control: list[bytes] = []
        self._control_bytes = 0
        self._pending: dict[str, bytes] = {}
        self._note: bytes | None = None  # the newest freshness note owed (app.core.freshness)
        # Called whenever something becomes owed (the connection writes it, or starts its writer).
        self.on_owed: Callable[[], None] | None = None
        self.client = "?"  # who this is for (app.core.admission.client_key), for fair admission

    @property
    def sink(self) -> Sink | None:
        """The transport's non-blocking write (app.ws.transport), set by the connection."""
        return self._sink

    @sink.setter
    def sink(self, sink: Sink | None) -> None:
        if self._sink is not None:
            self._sink.watch(None)
        self._sink = sink
        self._raw = None
        if sink is not None:
            sink.watch(self._direct_changed)
        self._gate()

    @property
    def sending(self) -> bool:
        """An awaited send is in progress: keep order, let it drain."""
        return self._sending

    @sending.setter
    def sending(self, sending: bool) -> None:
        self._sending = sending
        self._gate()

    @property
    def closing(self) -> tuple[int, str] | None:
        """Set by `close_after`: the writer sends what is queued, then closes with this code."""
        return self._closing

    @closing.setter
    def closing(self, closing: tuple[int, str] | None) -> None:
        self._closing = closing
        self._gate()

    @property
    def overflowed(self) -> bool:
        return self._overflowed

    def _direct_changed(self, raw: Direct | None) -> None:
        self._raw = raw
        self._gate()

    def _gate(self) -> None:
        """`direct` is the sink's write exactly when a live payload may go now: the sink takes
        it, and nothing is owed before it (queued, being sent, a close or an overflow)."""
        if self._pending or self._control or self._sending or self._closing or self._overflowed:
            self.direct = None
        else:
            self.direct = self._raw

    def offer(self, symbol: str, payload: bytes, published_at: int) -> None:
        """Queue a live update for the writer task, replacing a pending one of that symbol."""
        if symbol not in self.symbols or self._overflowed:
            return
        pending = self._pending
        if symbol in pending:
            self.conflated += 1
        elif not pending:
            self._pending_since = published_at
        pending[symbol] = payload
        self.direct = None
        self._owed()

    def offer_all(
        self, symbols: Sequence[str], texts: dict[str, bytes], published_at: int, note: bytes | None
    ) -> None:
        """What the fan-out could not write now: `symbols`' quotes (`texts`), then a note."""
        for symbol in symbols:
            self.offer(symbol, texts[symbol], published_at)
        if note is not None:
            self.offer_note(note, {})

    def offer_snapshot(self, encoded: dict[str, bytes]) -> int:
        """Queue a snapshot message of the `encoded` quotes ({symbol: quote in our format}, the
        newest known, so they supersede pending ones); returns its size in bytes."""
        texts = []
        for symbol, text in encoded.items():
            if symbol in self.symbols:
                self._pending.pop(symbol, None)
                texts.append(text)
        if not texts:
            return 0
        message = self.fmt.frame("snapshot", texts)
        self.offer_control(message)
        return len(message)

    def offer_note(self, payload: bytes, prepared: dict[object, bytes]) -> None:
        """A freshness note: only the newest is ever owed (it supersedes the one before), after
        the quotes. Written at once when nothing is owed before it; `prepared` caches the
        payload's framing per kind of sink, shared by every outbox given the same payload."""
        if self.overflowed or self.closing:
            return
        sink = self.sink
        if sink is not None and not (self._pending or self._control or self.sending):
            prepare = sink.prepare
            framed = prepared.get(prepare)
            if framed is None:
                framed = prepared[prepare] = prepare(payload)
            if sink.write(framed):
                self._note = None
                return
        self._note = payload
        self._owed()

    def offer_control(self, message: bytes | None) -> None:
        if message is None or self.overflowed:
            return
        size = self._control_bytes + len(message)
        # One message larger than the bound alone is let through (it is the server's own reply,
        # bounded by its request); a backlog past the bound is not.
        if len(self._control) >= self._max_control or (self._control and size > self._max_bytes):
            self._overflowed = True
            self.clear()  # it will be closed with 1013, not sent any of this
        else:
            self._control.append(message)
            self._control_bytes = size
        self.direct = None
        self._owed()

    def clear(self) -> None:
        """Drop everything owed (the connection is being closed)."""
        self._control.clear()
        self._control_bytes = 0
        self._pending.clear()
        self._note = None
        self._gate()

    def close_after(self, code: int, reason: str) -> None:
        """Ask the writer to close once everything queued so far has been sent."""
        if self._closing is None:
            self.closing = (code, reason)
        self._owed()

    def send_away(self, delay_ms: int) -> None:
        """The drain: tell the client to reconnect after `delay_ms`, then close with 1012."""
        self.offer_control(self.fmt.reconnect(delay_ms))
        self.close_after(WS_1012_SERVICE_RESTART, "server restarting")

    def forget(self, symbols: Sequence[str]) -> None:
        """After unsubscribe: drop pending updates of `symbols`."""
        for symbol in symbols:
            self._pending.pop(symbol, None)
        self._gate()

    def _owed(self) -> None:
        if self.on_owed is not None:
            self.on_owed()

    def owes(self) -> bool:
        return bool(self._control or self._pending or self._note)

    def write_owed_now(self) -> tuple[int, bool]:
        """Write what is owed through the sink, in order, as far as it takes it:
        (messages written, whether all of it went). The writer task's job when it did not (no
        sink, a paused socket, a send in progress, a close or an overflow to act on)."""
        result = self._write_owed()
        self._gate()
        return result

    def _write_owed(self) -> tuple[int, bool]:
        self.batch_published_at = 0
        sink = self.sink
        if sink is None or self.sending or self.closing or self.overflowed:
            return 0, not self.owes() and not self.closing and not self.overflowed
        written = 0
        control = self._control
        while control:
            if not sink.write(sink.prepare(control[0])):
                return written, False
            self._control_bytes -= len(control.pop(0))
            written += 1
        if self._pending:
            batch = self.fmt.frame("batch", list(self._pending.values()))
            if not sink.write(sink.prepare(batch)):
                return written, False
            self._pending.clear()
            self.batch_published_at = self._pending_since
            written += 1
        if self._note is not None:
            if not sink.write(sink.prepare(self._note)):
                return written, False
            self._note = None
            written += 1
        return written, True

    def drain(self) -> list[bytes]:
        """Everything owed now, in order: control messages, one message of live quotes, the
        freshness note."""
        messages, self._control = self._control, []
        self._control_bytes = 0
        self.batch_published_at = 0
        if self._pending:
            messages.append(self.fmt.frame("batch", list(self._pending.values())))
            self._pending.clear()
            self.batch_published_at = self._pending_since
        if self._note is not None:
            messages.append(self._note)
            self._note = None
        self._gate()
        return messages
