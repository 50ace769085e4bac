"""Recent prices per symbol, kept in this process, so the stock page's chart opens with a line.

The recorder listens on `market-data:updates` itself rather than watching symbols through the hub:
a watch counts as a subscriber, and would make the fetcher price symbols nobody looks at. It keeps
`(source_time, price)` of every published quote, bounded per symbol and in the number of symbols.
Best effort by design: each replica remembers from its own start, and quotes published while the
bus was down are missing from the line (the chart is a picture, not a record).
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from decimal import Decimal

import orjson

from app.models import Quote, QuoteDecodeError, is_newer, quote_from_dict
from app.pubsub.base import UPDATES_CHANNEL, Bus

log = logging.getLogger(__name__)

Point = tuple[int, Decimal]


class History:
    def __init__(self, bus: Bus, *, per_symbol: int = 3000, max_symbols: int = 500) -> None:
        self._bus = bus
        self._per_symbol = per_symbol
        self._max_symbols = max_symbols
        self._points: OrderedDict[str, deque[Point]] = OrderedDict()
        self._last: dict[str, Quote] = {}

    def points(self, symbol: str) -> list[Point]:
        """Oldest first; each point is (source time in ms since the Unix epoch, price)."""
        return list(self._points.get(symbol, ()))

    def record(self, quote: Quote) -> None:
        if not is_newer(quote, self._last.get(quote.symbol)):
            return
        self._last[quote.symbol] = quote
        line = self._points.get(quote.symbol)
        if line is None:
            if len(self._points) >= self._max_symbols:
                forgotten, _ = self._points.popitem(last=False)
                self._last.pop(forgotten, None)
            line = self._points[quote.symbol] = deque(maxlen=self._per_symbol)
        self._points.move_to_end(quote.symbol)
        if line and line[-1][0] >= quote.source_time:
            # Same (or an earlier) source time: the newer quote corrects that point.
            line[-1] = (line[-1][0], quote.price)
        else:
            line.append((quote.source_time, quote.price))

    def dispatch(self, data: bytes) -> None:
        try:
            quotes = [quote_from_dict(item) for item in orjson.loads(data)["quotes"]]
        except (orjson.JSONDecodeError, KeyError, TypeError, QuoteDecodeError) as exc:
            log.debug("history ignores a malformed update: %s", exc)
            return
        for quote in quotes:
            self.record(quote)

    async def run(self) -> None:
        async for message in self._bus.listen([UPDATES_CHANNEL]):
            self.dispatch(message.data)
