"""The Quote value type and its one JSON codec.

Wire form (see docs/protocol.md): prices are decimal *strings* (`"1270.45"`) so no float rounding
ever touches a price; times are integer milliseconds since the Unix epoch.

- `seq` grows by one each time the fetcher publishes a changed quote for that symbol, and never
  goes back, across fetcher restarts and failovers (it is carried in the stored snapshot).
- `epoch` identifies the fetcher's term that published the quote (a later term has a larger one);
  clients order quotes by `(epoch, seq)`, see `is_newer`.
- `source_time` is when the source says the price was current; `published_at` is when the fetcher
  put it on the bus, so `receive time - published_at` is the fan-out latency.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson


class QuoteDecodeError(ValueError):
    """Bytes or an object that is not a valid quote."""


@dataclass(frozen=True, slots=True)
class Quote:
    symbol: str
    price: Decimal
    change: Decimal
    change_pct: Decimal
    open: Decimal
    high: Decimal
    low: Decimal
    prev_close: Decimal
    volume: int | None
    currency: str
    exchange: str
    name: str
    source: str
    source_time: int
    market_open: bool | None = None
    seq: int = 0
    epoch: int = 0
    published_at: int = 0

    def same_market_data(self, other: Quote) -> bool:
        """True when nothing a trader sees differs (ignores seq, epoch and publish time)."""
        return (
            self.price == other.price
            and self.open == other.open
            and self.high == other.high
            and self.low == other.low
            and self.prev_close == other.prev_close
            and self.volume == other.volume
            and self.market_open == other.market_open
            and self.source == other.source
        )


def is_newer(candidate: Quote, current: Quote | None) -> bool:
    """The ordering rule every consumer applies: a later fetcher term wins, then a higher seq."""
    return current is None or (candidate.epoch, candidate.seq) > (current.epoch, current.seq)


_DECIMALS = ("price", "change", "change_pct", "open", "high", "low", "prev_close")
_STRINGS = ("symbol", "currency", "exchange", "name", "source")
_FIELD_NAMES = tuple(f.name for f in fields(Quote))


def quote_to_dict(quote: Quote) -> dict[str, Any]:
    return {
        "symbol": quote.symbol,
        "price": str(quote.price),
        "change": str(quote.change),
        "change_pct": str(quote.change_pct),
        "open": str(quote.open),
        "high": str(quote.high),
        "low": str(quote.low),
        "prev_close": str(quote.prev_close),
        "volume": quote.volume,
        "currency": quote.currency,
        "exchange": quote.exchange,
        "name": quote.name,
        "source": quote.source,
        "source_time": quote.source_time,
        "market_open": quote.market_open,
        "seq": quote.seq,
        "epoch": quote.epoch,
        "published_at": quote.published_at,
    }


def encode_quote(quote: Quote) -> bytes:
    return orjson.dumps(quote_to_dict(quote))


def quote_from_dict(obj: object) -> Quote:
    """Build a Quote from decoded JSON, checking every field's type."""
    if not isinstance(obj, dict):
        raise QuoteDecodeError("quote is not an object")
    missing = [name for name in _FIELD_NAMES if name not in obj]
    if missing:
        raise QuoteDecodeError(f"quote lacks {', '.join(missing)}")
    values: dict[str, Any] = {}
    for name in _DECIMALS:
        values[name] = _decimal(name, obj[name])
    for name in _STRINGS:
        if not isinstance(obj[name], str):
            raise QuoteDecodeError(f"{name} is not a string")
        values[name] = obj[name]
    for name in ("source_time", "seq", "epoch", "published_at"):
        values[name] = _integer(name, obj[name])
    volume = obj["volume"]
    values["volume"] = None if volume is None else _integer("volume", volume)
    market_open = obj["market_open"]
    if market_open is not None and not isinstance(market_open, bool):
        raise QuoteDecodeError("market_open is not a boolean")
    values["market_open"] = market_open
    return Quote(**values)


def decode_quote(data: bytes) -> Quote:
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise QuoteDecodeError(f"not JSON: {exc}") from None
    return quote_from_dict(obj)


def _decimal(name: str, value: object) -> Decimal:
    if not isinstance(value, str):
        raise QuoteDecodeError(f"{name} is not a decimal string")
    try:
        result = Decimal(value)
    except InvalidOperation:
        raise QuoteDecodeError(f"{name} is not a decimal string") from None
    if not result.is_finite():
        raise QuoteDecodeError(f"{name} is not finite")
    return result


def _integer(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise QuoteDecodeError(f"{name} is not an integer")
    return value
