"""The fan-out: a bus message's quotes to every connection watching them, each payload built once.

Outboxes that watch the same symbol set in the same wire format form a `Cohort` (app.core.cohort;
every trader on the default dashboard shares one); app.core.subscriptions regroups an outbox
whenever its set changes. Each quote is encoded once per format, and each distinct payload is
built and prepared (the transport's framing, the same function for every sink of a transport)
once, then the same bytes go to every client that gets it, without awaiting. A stream's message
of a few quotes is framed per quote (most clients watch one of them, and random watchlists make
every client a cohort of its own); a tick's batch per cohort. Per client that is one attribute
read and one call (`Outbox.direct`): no per-client Python frame, no per-client state check. A
member that cannot take it now (no sink, paused by flow control, or owed something first) gets
the updates queued in its outbox instead, conflated to the latest per symbol, for its writer.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from itertools import chain, repeat
from operator import attrgetter, call
from typing import cast

from app.core.cohort import Cohort, Cohorts, Kind
from app.core.envelope import Envelope
from app.core.outbox import Outbox
from app.core.wire import WireFormat
from app.models import Quote
from app.stats import Histogram

# Up to this many quotes in a message, it goes out as a stream's (see Fanout._publish_few).
FEW = 8
_NONE: frozenset[Cohort] = frozenset()  # no cohort watches the symbol
_MEMBERS = attrgetter("members")
_DIRECT = attrgetter("direct")
_consume = deque[object](maxlen=0).extend  # runs an iterator to its end, in C
_NO_TEXTS: dict[str, bytes] = {}  # nothing encoded in a format yet (never written to)


def _members(cohorts: Iterable[Cohort]) -> Iterator[Outbox]:
    return chain.from_iterable(map(_MEMBERS, cohorts))


def _encode(fmt: WireFormat, quote: Quote) -> bytes:
    return fmt.encode(quote)


class Fanout:
    def __init__(self, encode: Callable[[WireFormat, Quote], bytes] = _encode) -> None:
        # A quote in a format (app.core.latest keeps the bytes for the snapshots that follow).
        self._encode = encode
        self.registry = Cohorts()
        self._by_symbol = self.registry.by_symbol
        self._payloads: dict[str, Callable[[Sequence[bytes]], bytes]] = {}  # Envelope.payload
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
        self.registry.regroup(outbox)

    def members_watching(self, symbol: str) -> Iterator[Outbox]:
        return _members(self._by_symbol.get(symbol, _NONE))

    def counts(self) -> dict[str, int]:
        """Watchers per symbol."""
        return dict(self.registry.counts)

    @property
    def cohorts(self) -> int:
        return len(self.registry.cohorts)

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
        if len(fresh) <= FEW:
            written = self._publish_few(fresh, encoded, oldest)
        else:
            written = self._publish_batch(fresh, encoded, oldest)
        if written:
            self.frames_fast += written
            self.fanout_lag.observe(max(0.0, time.time() - oldest / 1000))

    def _publish_few(
        self, fresh: dict[str, Quote], encoded: dict[str, dict[str, bytes]], oldest: int
    ) -> int:
        """A stream's few quotes. With random watchlists every client is a cohort of its own,
        yet most watch just one of a message's quotes: set operations (in C) find, per kind of
        cohort, those that watch several; all the others of a kind watching a quote get that
        quote's payload, the same bytes, written in one C loop (`_write_plain`)."""
        symbols = sorted(fresh)
        owing = self.registry.owing
        written = 0
        for by_symbol in self.registry.by_kind.values():
            watching = [by_symbol.get(symbol, _NONE) for symbol in symbols]
            several: set[Cohort] = set()
            if len(watching) > 1:
                seen: set[Cohort] = set()
                for cohorts in watching:
                    several |= seen & cohorts
                    seen |= cohorts
            for symbol, cohorts in zip(symbols, watching, strict=True):
                if several:
                    cohorts = cohorts - several
                if owing and not owing.isdisjoint(cohorts):  # a note rides along: per cohort
                    noted = cohorts & owing  # (writing it takes the cohort out of `owing`)
                    cohorts = cohorts - noted
                    written += self._write_all(noted, (symbol,), fresh, encoded, oldest)
                if cohorts:
                    written += self._write_plain(cohorts, (symbol,), fresh, encoded, oldest)
            if several:
                groups: dict[tuple[str, ...], list[Cohort]] = {}
                for cohort in several:
                    changed = tuple(s for s in symbols if s in cohort.symbol_set)
                    groups.setdefault(changed, []).append(cohort)
                for changed, group in groups.items():
                    written += self._write_all(group, changed, fresh, encoded, oldest)
        return written

    def _write_plain(
        self,
        cohorts: Collection[Cohort],
        changed: tuple[str, ...],
        fresh: dict[str, Quote],
        encoded: dict[str, dict[str, bytes]],
        oldest: int,
    ) -> int:
        """`_write_all` for cohorts of one kind owed no note: every member gets the same
        payload, so the loop over them runs in C, a call per client with no Python frame."""
        _, prepared = self._build(next(iter(cohorts)), changed, fresh, encoded)
        if prepared is not None:
            directs = list(map(_DIRECT, _members(cohorts)))
            if None not in directs:
                self.delivered += len(changed) * len(directs)
                _consume(map(call, directs, repeat(prepared)))
                return len(directs)
        # No sink, or a member that cannot take it now: `_write` queues for it, cohort by cohort.
        return self._write_all(cohorts, changed, fresh, encoded, oldest)

    def _write_all(
        self,
        cohorts: Iterable[Cohort],
        changed: tuple[str, ...],
        fresh: dict[str, Quote],
        encoded: dict[str, dict[str, bytes]],
        oldest: int,
    ) -> int:
        """Write the payload of the `changed` quotes to every member of `cohorts` (they all
        watch exactly those of `fresh`), cohort by cohort: built once per kind."""
        written = 0
        built: dict[Kind, tuple[dict[str, bytes], bytes | None]] = {}
        for cohort in cohorts:
            made = built.get(cohort.kind)
            if made is None:
                made = built[cohort.kind] = self._build(cohort, changed, fresh, encoded)
            written += self._write(cohort, changed, made[0], oldest, made[1])
        return written

    def _build(
        self,
        cohort: Cohort,
        changed: tuple[str, ...],
        fresh: dict[str, Quote],
        encoded: dict[str, dict[str, bytes]],
    ) -> tuple[dict[str, bytes], bytes | None]:
        """The texts of `fresh` in the cohort's format (encoding the missing `changed` ones), and
        the cohort's payload of `changed`."""
        texts = encoded.setdefault(cohort.fmt.name, {})
        for symbol in changed:
            if symbol not in texts:
                texts[symbol] = self._encode(cohort.fmt, fresh[symbol])
        prepare = cohort.prepare
        if prepare is None:  # each member's writer frames what it is owed
            return texts, None
        payload = self._payloads.get(cohort.fmt.name) or self._payload(cohort.fmt)
        return texts, prepare(payload([texts[s] for s in changed]))

    def _publish_batch(
        self, fresh: dict[str, Quote], encoded: dict[str, dict[str, bytes]], oldest: int
    ) -> int:
        """A batch (a tick): one payload per cohort touched, mostly one whose symbols all
        changed; payloads are not kept, so each is freed once written and memory stays warm."""
        touched: set[Cohort] = set()
        for symbol in fresh:
            touched.update(self._by_symbol.get(symbol, _NONE))
        keys = fresh.keys()
        written = delivered = 0
        # Per client as few Python frames as can be: a tick at 19,000 clients is 19,000 of these.
        payloads, owing = self._payloads, self.registry.owing
        for cohort in touched:
            if cohort.symbol_set <= keys:
                changed = cohort.symbols
            else:
                changed = tuple(filter(keys.__contains__, cohort.symbols))
            name = cohort.fmt.name
            texts = encoded.get(name, _NO_TEXTS)
            try:  # one C call when all of the cohort's symbols changed
                items = cohort.texts_of(texts) if changed is cohort.symbols else [
                    texts[s] for s in changed
                ]  # fmt: skip
            except KeyError:  # the first cohort of this format to need some of them
                texts, prepared = self._build(cohort, changed, fresh, encoded)
            else:
                prepare = cohort.prepare
                payload = payloads.get(name) or self._payload(cohort.fmt)
                prepared = None if prepare is None else prepare(payload(items))
            if prepared is None or cohort in owing:  # (a set lookup: no property call)
                written += self._write(cohort, changed, texts, oldest, prepared)
                continue
            delivered += len(changed) * len(cohort.members)
            for outbox in cohort.members:
                direct = outbox.direct
                if direct is None:
                    outbox.offer_all(changed, texts, oldest, None)
                else:
                    direct(prepared)
                    written += 1
        self.delivered += delivered
        return written

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
                direct = outbox.direct
                if direct is None:
                    outbox.offer_all(changed, texts, oldest, note)
                else:
                    direct(prepared)
                    written += 1
        else:
            for outbox in members:
                outbox.offer_all(changed, texts, oldest, note)
        self.delivered += len(changed) * len(members)
        return written

    def _payload(self, fmt: WireFormat) -> Callable[[Sequence[bytes]], bytes]:
        payload = self._payloads[fmt.name] = Envelope(fmt).payload
        return payload
