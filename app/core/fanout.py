"""The fan-out: the connections' subscriptions grouped so a message is built once per group.

Outboxes that watch the same symbol set in the same wire format form a `Cohort` (every trader on
the default dashboard shares one); app.core.subscriptions regroups an outbox whenever its set
changes. For each bus message the fan-out finds the cohorts that watch a changed symbol and the
symbols that changed for each, builds each distinct batch payload once (cohorts whose changed
symbols are the same share it, which matters when random watchlists make every client a cohort
of its own; each quote is encoded once per format), has the sink prepare it once (the
transport's framing, the same function for every sink of a transport), and writes those same
bytes to every member without awaiting (`Outbox.send_now`). Per client that is
a few attribute reads and one write: no per-client, per-quote Python. A member that cannot take
it now (no sink, paused by flow control, or owed control messages first) gets the updates queued
in its outbox instead, where they conflate to the latest per symbol and its writer sends them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from operator import itemgetter
from typing import cast

from app.core.envelope import Envelope
from app.core.outbox import Outbox
from app.core.wire import WireFormat
from app.models import Quote
from app.stats import Histogram

# Prepares a payload for a kind of sink (a transport's framing); None: the members have no sink.
Prepare = Callable[[bytes], bytes] | None
CohortKey = tuple[str, Prepare, tuple[str, ...]]
# Up to this many quotes in a message, each cohort's changed ones are gathered per quote watched.
FEW = 8


class Cohort:
    """The outboxes that watch exactly `symbols` (sorted) in wire format `fmt`, through sinks
    that prepare a payload with `prepare` (the same transport), or through none."""

    __slots__ = ("fmt", "prepare", "symbols", "symbol_set", "texts_of", "members", "note", "noted")

    def __init__(self, fmt: WireFormat, prepare: Prepare, symbols: tuple[str, ...]) -> None:
        self.fmt = fmt
        self.prepare = prepare
        self.symbols = symbols
        self.symbol_set = frozenset(symbols)
        # One C call that picks this cohort's texts out of a publish's {symbol: text}.
        self.texts_of = _picker(symbols)
        self.members: set[Outbox] = set()
        # A freshness note owed to every member (app.core.freshness), due since `noted` (ms): it
        # rides along with the cohort's next batch, in the same write, or goes alone when late.
        self.note: bytes | None = None
        self.noted = 0


def _picker(symbols: tuple[str, ...]) -> Callable[[dict[str, bytes]], Sequence[bytes]]:
    get = itemgetter(*symbols)
    if len(symbols) == 1:
        return lambda texts: (get(texts),)
    return cast(Callable[[dict[str, bytes]], Sequence[bytes]], get)


def _encode(fmt: WireFormat, quote: Quote) -> bytes:
    return fmt.encode(quote)


def _key(cohort: Cohort) -> CohortKey:
    return (cohort.fmt.name, cohort.prepare, cohort.symbols)


class Fanout:
    def __init__(self, encode: Callable[[WireFormat, Quote], bytes] = _encode) -> None:
        # A quote in a format (app.core.latest keeps the bytes for the snapshots that follow).
        self._encode = encode
        self._cohorts: dict[CohortKey, Cohort] = {}
        self._by_symbol: dict[str, set[Cohort]] = {}
        self._counts: dict[str, int] = {}  # symbol -> watchers, kept as members come and go
        self._envelopes: dict[str, Envelope] = {}
        # Counters for /metrics (plain numbers on the hot path; see app.stats).
        self.delivered = 0  # quotes handed to clients (written or queued)
        self.frames_fast = 0  # frames written straight to sockets
        self.fanout_lag = Histogram()  # publish -> last frame written, seconds
        self.notes_along = 0  # freshness notes that went out with a batch (app.core.freshness)
        self._soon: dict[str, Quote] = {}  # quotes held until the end of this loop turn
        self.merged = 0  # quotes that went out in another bus message's frame (publish_soon)

    # ---- membership --------------------------------------------------------------------------

    def regroup(self, outbox: Outbox) -> None:
        """Put `outbox` in the cohort of its current symbol set (none when it watches nothing).
        Its sink must not change while it is in one."""
        if self._soon:  # quotes held for this turn go to the members they were meant for
            self._publish_held()
        sink = outbox.sink
        key = (outbox.fmt.name, sink.prepare if sink else None, tuple(sorted(outbox.symbols)))
        old = cast("Cohort | None", outbox.cohort)
        if old is not None:
            if _key(old) == key:
                return
            old.members.discard(outbox)
            self._count(old.symbols, -1)
            if not old.members:
                self._drop(old)
        outbox.cohort = None
        if not outbox.symbols:
            return
        cohort = self._cohorts.get(key)
        if cohort is None:
            cohort = self._cohorts[key] = Cohort(outbox.fmt, key[1], key[2])
            for symbol in cohort.symbols:
                self._by_symbol.setdefault(symbol, set()).add(cohort)
        cohort.members.add(outbox)
        outbox.cohort = cohort
        self._count(cohort.symbols, 1)

    def _count(self, symbols: tuple[str, ...], delta: int) -> None:
        counts = self._counts
        for symbol in symbols:
            count = counts[symbol] = counts.get(symbol, 0) + delta
            if not count:
                del counts[symbol]

    def _drop(self, cohort: Cohort) -> None:
        del self._cohorts[_key(cohort)]
        for symbol in cohort.symbols:
            cohorts = self._by_symbol[symbol]
            cohorts.discard(cohort)
            if not cohorts:
                del self._by_symbol[symbol]

    def members_watching(self, symbol: str) -> Iterator[Outbox]:
        for cohort in self._by_symbol.get(symbol, ()):
            yield from cohort.members

    def counts(self) -> dict[str, int]:
        """Watchers per symbol."""
        return dict(self._counts)

    @property
    def cohorts(self) -> int:
        return len(self._cohorts)

    def groups(self) -> Iterator[Cohort]:
        return iter(list(self._cohorts.values()))

    # ---- the hot path ------------------------------------------------------------------------

    def publish_soon(self, quotes: Iterable[Quote]) -> None:
        """`publish`, at the end of this turn of the event loop. Bus messages read together
        (several waiting on the socket, as when the loop falls behind under load) then go out
        as one frame per cohort, newest quote per symbol, instead of one per message: the
        writes, and the CPU per quote, drop exactly when there is the most to send."""
        held = self._soon
        first = not held
        for quote in quotes:
            self.merged += quote.symbol in held
            held[quote.symbol] = quote
        if first and held:
            asyncio.get_running_loop().call_soon(self._publish_held)

    def _publish_held(self) -> None:
        held, self._soon = self._soon, {}
        if held:
            self.publish(held.values())

    def publish(self, quotes: Iterable[Quote]) -> None:
        """Deliver `quotes` (each newer than any this process delivered before). Never awaits."""
        fresh = {quote.symbol: quote for quote in quotes}
        if not fresh:
            return
        # One bus message is one publish: its oldest stamp times every frame it causes.
        oldest = min(quote.published_at for quote in fresh.values())
        # format name -> symbol -> text (UTF-8): each quote is encoded once per format, and only
        # if a cohort of that format watches it (an HTML row is a template render).
        encoded: dict[str, dict[str, bytes]] = {}
        # The prepared payload of each distinct (format, framing, changed symbols), when a
        # message has a few quotes: cohorts that differ only in symbols that did not change get
        # the same bytes, built once (with random watchlists every client is a cohort of its own,
        # yet a quote is framed once). A big batch's changed sets are mostly one cohort's own:
        # its payloads are not kept, so each is freed once written and memory stays warm.
        frames: dict[CohortKey, bytes] | None = {} if len(fresh) <= FEW else None
        written = 0
        for cohort, changed in self._changes(fresh):
            fmt = cohort.fmt
            prepared = None
            if frames is not None:
                key = (fmt.name, cohort.prepare, changed)
                prepared = frames.get(key)
            texts = encoded.get(fmt.name)
            if texts is None:
                texts = encoded[fmt.name] = {}
            if prepared is None:
                items: Sequence[bytes]
                try:
                    if changed is cohort.symbols:
                        items = cohort.texts_of(texts)
                    else:
                        items = [texts[s] for s in changed]
                except KeyError:  # the first cohort of this format to need some of them
                    for symbol in changed:
                        if symbol not in texts:
                            texts[symbol] = self._encode(fmt, fresh[symbol])
                    items = [texts[s] for s in changed]
                prepare = cohort.prepare
                if prepare is not None:  # else each member's writer frames what it is owed
                    prepared = prepare(self._envelope(fmt).payload(items))
                    if frames is not None:
                        frames[key] = prepared
            written += self._write(cohort, changed, texts, oldest, prepared)
        if written:
            self.frames_fast += written
            self.fanout_lag.observe(max(0.0, time.time() - oldest / 1000))

    def _changes(self, fresh: dict[str, Quote]) -> list[tuple[Cohort, tuple[str, ...]]]:
        """Each cohort watching any of `fresh`, with its changed symbols in sorted order (its
        own order; `cohort.symbols` itself when all of them changed)."""
        by_symbol = self._by_symbol
        if len(fresh) == 1:
            one = tuple(fresh)
            return [(cohort, one) for cohort in by_symbol.get(one[0], ())]
        if len(fresh) <= FEW:  # a stream's few quotes: one step per (quote, cohort watching it)
            hits: dict[Cohort, list[str]] = {}
            for symbol in sorted(fresh):
                for cohort in by_symbol.get(symbol, ()):
                    mine = hits.get(cohort)
                    if mine is None:
                        hits[cohort] = [symbol]
                    else:
                        mine.append(symbol)
            return [
                (cohort, cohort.symbols if len(mine) == len(cohort.symbols) else tuple(mine))
                for cohort, mine in hits.items()
            ]
        # A batch (a tick): one step per cohort touched, mostly one whose symbols all changed.
        touched: set[Cohort] = set()
        for symbol in fresh:
            cohorts = by_symbol.get(symbol)
            if cohorts:
                touched.update(cohorts)
        keys = fresh.keys()
        return [
            (c, c.symbols if c.symbol_set <= keys else tuple(filter(keys.__contains__, c.symbols)))
            for c in touched
        ]

    def _write(
        self,
        cohort: Cohort,
        changed: tuple[str, ...],
        texts: dict[str, bytes],
        oldest: int,
        prepared: bytes | None,
    ) -> int:
        """Write the cohort's `prepared` payload (None: its members have no sink) to each member
        that takes it now, queue the `changed` quotes' `texts` to the others; returns how many
        took it."""
        written = 0
        members = cohort.members
        note, cohort.note = cohort.note, None
        if prepared is not None:
            if note is not None:  # the note owed too, in the same write: no syscall of its own
                prepared += cast(Callable[[bytes], bytes], cohort.prepare)(note)
                self.notes_along += len(members)
            for outbox in members:
                if outbox.send_now(prepared):
                    written += 1
                else:
                    self._queue(outbox, changed, texts, oldest, note)
        else:
            for outbox in members:
                self._queue(outbox, changed, texts, oldest, note)
        self.delivered += len(changed) * len(members)
        return written

    @staticmethod
    def _queue(
        outbox: Outbox,
        changed: tuple[str, ...],
        texts: dict[str, bytes],
        oldest: int,
        note: bytes | None,
    ) -> None:
        """What an outbox cannot take now waits in it, conflated, for its writer."""
        for symbol in changed:
            outbox.offer(symbol, texts[symbol], oldest)
        if note is not None:
            outbox.offer_note(note, {})

    def _envelope(self, fmt: WireFormat) -> Envelope:
        envelope = self._envelopes.get(fmt.name)
        if envelope is None:
            envelope = self._envelopes[fmt.name] = Envelope(fmt)
        return envelope
