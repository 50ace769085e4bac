"""The newest quote per symbol in this process, and its encodings: one table, one owner.

Every snapshot, fan-out, page and metric reads it. A quote enters only if it is newer than the
one held (`is_newer`: epoch, then seq), so no client is ever handed an older price after a newer
one. The shared snapshot store (`quotes:last`) fills it for symbols this process has not heard of
yet, one read per symbol in flight however many subscribers ask at once.

Each format's encoding of the held quote is kept beside it (`encoded`): the fan-out encodes a
new quote once per wire format, and the snapshots of every client subscribing after it (thousands,
in a reconnect storm) reuse those bytes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence

from app.core.wire import WireFormat
from app.logbudget import client_noise
from app.models import Quote, QuoteDecodeError, decode_quote, is_newer
from app.pubsub.base import BusUnavailable, SnapshotStore

log = logging.getLogger(__name__)


class LatestQuotes:
    def __init__(
        self,
        store: SnapshotStore,
        deliver: Callable[[list[Quote]], object],
        on_first: Callable[[str], None] = lambda symbol: None,
    ) -> None:
        self._store = store
        # Where quotes read from the store that were newer than ours go (the hub's delivery).
        self._deliver = deliver
        self._on_first = on_first  # a symbol's first price in this process
        self._quotes: dict[str, Quote] = {}
        self._texts: dict[tuple[str, str], tuple[Quote, bytes]] = {}
        self._reads: dict[str, asyncio.Future[None]] = {}  # store reads in flight

    async def reread(self, symbols: Sequence[str]) -> bool:
        """After a gap in the bus (pub/sub lost what was published meanwhile): deliver the
        stored quotes newer than ours. False if the store could not be read."""
        try:
            stored = await self._store.get(symbols)
        except BusUnavailable as exc:
            log.warning("resync after reconnect failed: %s", exc)
            return False
        self._deliver(decode_stored(stored.values()))
        return True

    def published_at(self, symbol: str) -> int:
        """When the quote held was published (0: none held)."""
        quote = self._quotes.get(symbol)
        return quote.published_at if quote is not None else 0

    def get(self, symbol: str) -> Quote | None:
        return self._quotes.get(symbol)

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._quotes

    def symbols(self) -> list[str]:
        return list(self._quotes)

    def remember(self, quote: Quote) -> bool:
        """Keep `quote` if it is newer than the one held; whether it was."""
        known = self._quotes.get(quote.symbol)
        if not is_newer(quote, known):
            return False
        self._quotes[quote.symbol] = quote
        if known is None:
            self._on_first(quote.symbol)
        return True

    def encoded(self, fmt: WireFormat, quote: Quote) -> bytes:
        """`quote` in `fmt`, encoded once while it is the newest of its symbol."""
        key = (fmt.name, quote.symbol)
        cached = self._texts.get(key)
        if cached is not None and cached[0] is quote:
            return cached[1]
        text = fmt.encode(quote)
        if self._quotes.get(quote.symbol) is quote:
            self._texts[key] = (quote, text)
        return text

    async def read(self, symbols: Sequence[str]) -> list[Quote]:
        """The newest quote known for each of `symbols` (this process, else the shared store)."""
        quotes, covers = self._quotes, self._store.covers
        # Held but not followed (a cluster's shard nobody here watched): the store is newer.
        missing = [s for s in symbols if s not in quotes or not covers(s)]
        if missing:
            await self._read_stored(missing)
        return [quotes[s] for s in symbols if s in quotes]

    async def _read_stored(self, symbols: Sequence[str]) -> None:
        # A reconnect storm lands thousands of subscribes for the same few symbols on a replica
        # that has not cached them yet: one store read per symbol in flight, the rest wait for it
        # (else each would take its own Redis connection, past the pool's limit).
        waits = {self._reads[s] for s in symbols if s in self._reads}
        todo = [s for s in symbols if s not in self._reads]
        if todo:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            for symbol in todo:
                self._reads[symbol] = done
            try:
                stored = await self._store.get(todo)
            except BusUnavailable as exc:
                # Every subscribe reads: one line a minute, not one per client, while it fails.
                client_noise.note("snapshot_read", f"snapshot read failed: {exc}")
                stored = {}
            finally:
                for symbol in todo:
                    del self._reads[symbol]
                done.set_result(None)
            # Newer than this process had: the watchers already here get them too (the bus copy
            # of the same quote, if it comes, is then no longer news).
            self._deliver(decode_stored(stored.values()))
        if waits:
            await asyncio.wait(waits)  # not gather: a cancelled waiter must not cancel the read


def decode_stored(stored: Iterable[bytes]) -> list[Quote]:
    """The stored quotes that decode (a corrupt one is logged and skipped)."""
    quotes = []
    for data in stored:
        try:
            quotes.append(decode_quote(data))
        except QuoteDecodeError as exc:
            log.warning("ignoring corrupt stored quote: %s", exc)
    return quotes
