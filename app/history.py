"""Recent prices per symbol for the stock page's chart, shared by every replica.

The fetcher appends one point per published quote to the backend's HistoryStore, inside the same
fenced publish that stores the snapshot and sends the update (app/fetcher.py), so every replica,
including one started a minute ago, draws the same line, and a deposed fetcher cannot write.
With Redis each symbol's line is the list `history:{symbol}`; without it, the in-memory store.
The line is bounded per symbol (`HISTORY_POINTS`) and a symbol's line vanishes `HISTORY_TTL`
seconds after its last point (nobody watches it any more, or its market is closed).

This module reads the line back for a page render. It never fails a page: when the store cannot
be read, the line is empty and carries a note saying so, and the page draws what it has (the
latest quote) while the live updates extend it. A picture, not a record: quotes published while
the store was down are missing from the line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from app.models import Quote
from app.pubsub.base import BusUnavailable, HistoryStore

log = logging.getLogger(__name__)

Point = tuple[int, Decimal]  # (source time in ms since the Unix epoch, price)

UNAVAILABLE = (
    "Earlier prices are unavailable right now (the shared store does not answer): the chart "
    "starts at the latest price and grows live."
)


def encode_point(quote: Quote) -> bytes:
    """One history entry: `b"<source_time ms> <price>"`, e.g. `b"1732790000123 1270.45"`."""
    return f"{quote.source_time} {quote.price}".encode()


def decode_points(entries: Iterable[bytes]) -> list[Point]:
    """Entries (in publish order) as a line: oldest first, one point per source time.

    The fetcher publishes in `(epoch, seq)` order, which a provider's clock need not follow: an
    entry whose time is not after the previous point's corrects that point's price instead of
    drawing backwards. Malformed entries are skipped.
    """
    line: list[Point] = []
    for entry in entries:
        try:
            raw_time, raw_price = entry.split(b" ", 1)
            point = (int(raw_time), Decimal(raw_price.decode()))
        except (ValueError, InvalidOperation, UnicodeDecodeError):
            log.debug("history skips a malformed entry %r", entry[:64])
            continue
        if not point[1].is_finite():
            continue
        if line and line[-1][0] >= point[0]:
            line[-1] = (line[-1][0], point[1])
        else:
            line.append(point)
    return line


@dataclass(frozen=True, slots=True)
class Line:
    points: list[Point] = field(default_factory=list)
    # Why the line is missing or partial, for people; None when it is all there is.
    note: str | None = None


# A page's sparklines are read from the store at most once a second per symbol and process, so a
# reload flood costs the store (single-threaded Redis, shared with the fenced publish) nothing
# more; the page script extends each line from the live rows anyway. Bounded by `SAMPLES_KEPT`.
SAMPLE_TTL = 1.0
SAMPLES_KEPT = 4096


class History:
    def __init__(self, store: HistoryStore, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._clock = clock
        self._samples: dict[tuple[str, int], tuple[float, list[Point]]] = {}

    async def line(self, symbol: str) -> Line:
        """The recent points of `symbol`, oldest first. Never raises BusUnavailable."""
        try:
            entries = await self._store.read(symbol)
        except BusUnavailable as exc:
            log.warning("drawing %s without its history: %s", symbol, exc)
            return Line([], UNAVAILABLE)
        return Line(decode_points(entries))

    async def samples(self, symbols: Sequence[str], points: int) -> dict[str, list[Point]]:
        """At most `points` points of each symbol's line, evenly spread over it (first and last
        kept), for all of `symbols` in one round trip (or none: read within `SAMPLE_TTL`): the
        sparklines of a page. Never raises BusUnavailable: the store cannot be read, the lines
        are empty (the rows draw none)."""
        now = self._clock()
        kept, found, missing = self._samples, {}, []
        for symbol in symbols:
            hit = kept.get((symbol, points))
            if hit is not None and now - hit[0] < SAMPLE_TTL:
                found[symbol] = hit[1]
            else:
                missing.append(symbol)
        if not missing:
            return found
        try:
            sampled = await self._store.sample(missing, points)
        except BusUnavailable as exc:
            log.warning("drawing %d sparklines without their history: %s", len(missing), exc)
            return found
        if len(kept) > SAMPLES_KEPT:
            kept.clear()
        for symbol, entries in zip(missing, sampled, strict=True):
            found[symbol] = line = decode_points(entries)
            kept[(symbol, points)] = (now, line)
        return found
