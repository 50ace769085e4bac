"""The values that cross the bus, and their one codec: Quote, FeedStatus, Rejection, Update,
SubscriptionChange (encoded and parsed here only, typed; nothing else builds or reads these JSON
shapes).

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

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

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


@dataclass(frozen=True, slots=True)
class FeedStatus:
    """Why the data is (or is not) fresh, as clients see it in `status` messages.

    `state` is `live` (quotes flowing) or `stale` (no configured real provider can answer now: the
    last real quotes stay, nothing is invented). `reason` says why: `rate_limited`,
    `provider_down`, `circuit_open`, `provider_refused` (bad key or plan), `quota_unknown` (the
    shared quota count cannot be reached, so no provider is called), or `failover` (live, but
    from a later provider of the chain). `source` names the provider concerned, `since` is
    when the last real quote was fetched (ms since the epoch; age = now - since), `retry_after`
    the seconds until the next attempt, when known.
    """

    state: str = "live"
    reason: str | None = None
    source: str | None = None
    since: int | None = None
    retry_after: float | None = None
    detail: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, obj: object) -> FeedStatus:
        if not isinstance(obj, dict) or not isinstance(obj.get("state"), str):
            raise ValueError("status is not an object with a state")
        known = {k: obj.get(k) for k in ("reason", "source", "detail")}
        for key, value in known.items():
            if value is not None and not isinstance(value, str):
                raise ValueError(f"status {key} is not a string")
        since, retry = obj.get("since"), obj.get("retry_after")
        if since is not None and (not isinstance(since, int) or isinstance(since, bool)):
            raise ValueError("status since is not an integer")
        if retry is not None and not isinstance(retry, int | float):
            raise ValueError("status retry_after is not a number")
        return cls(obj["state"], known["reason"], known["source"], since, retry, known["detail"])


LIVE = FeedStatus()


class Refusal(NamedTuple):
    """Why a symbol has no price: the provider's own `reason`, and the `source` that said so."""

    reason: str
    source: str | None


@dataclass(frozen=True, slots=True)
class Rejection:
    """A symbol the feed cannot price; it is not asked for again for `retry_after` seconds."""

    symbol: str
    reason: str
    source: str | None = None
    retry_after: float = 0

    @property
    def refusal(self) -> Refusal:
        return Refusal(self.reason, self.source)


class UpdateDecodeError(ValueError):
    """Bytes that are not a valid `market-data:updates` message."""


@dataclass(frozen=True, slots=True)
class Update:
    """One `market-data:updates` message: a fetch tick's changed quotes, and optionally the
    feed's `status`, the symbols it `rejected`, its per-symbol `refresh` interval (seconds
    between two fetches of one symbol under the provider's quota), and the symbols whose price
    the source `confirmed` unchanged at `confirmed_at` (ms; changed ones carry their own time)."""

    epoch: int
    quotes: list[Quote]
    status: FeedStatus | None = None
    rejected: tuple[Rejection, ...] = ()
    refresh: float | None = None
    confirmed: tuple[str, ...] = ()
    confirmed_at: int = 0


def encode_update(
    epoch: int,
    quotes: Sequence[bytes],
    status: FeedStatus | None = None,
    rejected: Sequence[Rejection] = (),
    refresh: float | None = None,
    confirmed: Sequence[str] = (),
    confirmed_at: int = 0,
) -> bytes:
    """The `market-data:updates` message around already-encoded quotes (joined, never
    re-encoded: the same bytes the snapshot store gets)."""
    extra = b"" if refresh is None else b',"refresh":%.3f' % refresh
    if confirmed:
        listed = orjson.dumps(list(confirmed))
        extra += b',"confirmed":%s,"confirmed_at":%d' % (listed, confirmed_at)
    if status is not None:
        extra += b',"status":' + orjson.dumps(status.to_dict())
    if rejected:
        extra += b',"rejected":' + orjson.dumps([_rejection_dict(r) for r in rejected])
    return b'{"epoch":%d,"quotes":[' % epoch + b",".join(quotes) + b"]" + extra + b"}"


def _rejection_dict(rejection: Rejection) -> dict[str, Any]:
    return {
        "symbol": rejection.symbol, "reason": rejection.reason, "source": rejection.source,
        "retry_after": rejection.retry_after,
    }  # fmt: skip


def parse_update(data: bytes) -> Update:
    """Decode and check one `market-data:updates` message (raises UpdateDecodeError)."""
    try:
        message = orjson.loads(data)
        quotes = [quote_from_dict(item) for item in message["quotes"]]
        status = FeedStatus.from_dict(message["status"]) if "status" in message else None
        refresh = message.get("refresh")
        rejected = tuple(
            Rejection(
                str(r["symbol"]),
                str(r["reason"]),
                r.get("source") if isinstance(r.get("source"), str) else None,
                float(r.get("retry_after", 0)),
            )
            for r in message.get("rejected", ())
        )
        epoch = message.get("epoch", 0)
        confirmed = tuple(s for s in message.get("confirmed", ()) if isinstance(s, str))
        confirmed_at = message.get("confirmed_at", 0)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UpdateDecodeError(str(exc)) from None
    return Update(
        epoch if isinstance(epoch, int) else 0,
        quotes,
        status,
        rejected,
        float(refresh) if isinstance(refresh, int | float) and refresh > 0 else None,
        confirmed if isinstance(confirmed_at, int) and confirmed_at > 0 else (),
        confirmed_at if isinstance(confirmed_at, int) and confirmed_at > 0 else 0,
    )


@dataclass(frozen=True, slots=True)
class SubscriptionChange:
    """One `market-data:subscriptions` event: symbols a replica began or stopped reporting."""

    replica: str
    added: tuple[str, ...]
    removed: tuple[str, ...]

    def encode(self) -> bytes:
        return orjson.dumps(
            {"replica": self.replica, "added": list(self.added), "removed": list(self.removed)}
        )

    @classmethod
    def parse(cls, data: bytes) -> SubscriptionChange:
        """Raises ValueError on a malformed event; symbols that are not strings are dropped."""
        try:
            event = orjson.loads(data)
            replica = event.get("replica")
            added = tuple(s for s in event.get("added", ()) if isinstance(s, str))
            removed = tuple(s for s in event.get("removed", ()) if isinstance(s, str))
        except (orjson.JSONDecodeError, AttributeError, TypeError) as exc:
            raise ValueError(f"malformed subscription event: {exc}") from None
        return cls(replica if isinstance(replica, str) else "", added, removed)
