"""A scripted adapter and a hand-driven clock for quota, breaker and chain tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from decimal import Decimal

from app.feeds.base import FetchResult
from app.models import Quote


class Clock:
    def __init__(self, now: float = 1_736_899_200.0) -> None:  # a UTC midnight
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def quote(symbol: str, source: str, price: str = "100") -> Quote:
    p = Decimal(price)
    return Quote(symbol, p, Decimal(0), Decimal(0), p, p, p, p, None, "USD", "NASDAQ", symbol,
                 source, 1_736_935_200_000)  # fmt: skip


class Scripted:
    """An adapter that prices what it is asked, or raises what `fail` says; it logs each call."""

    def __init__(self, name: str = "fake", accepts: Callable[[str], bool] = lambda s: True) -> None:
        self.name = name
        self.accepts = accepts
        self.calls: list[list[str]] = []
        self.fail: Exception | None = None
        self.reject: set[str] = set()
        self.on_call: Callable[[], None] = lambda: None
        # What its quotes say about their market (None: nothing, as Finnhub's).
        self.exchange = "NASDAQ"
        self.market_open: bool | None = None

    def check_symbol(self, symbol: str) -> str | None:
        return None if self.accepts(symbol) else f"{self.name} does not list {symbol}"

    async def fetch(self, symbols: Sequence[str]) -> FetchResult:
        self.calls.append(list(symbols))
        self.on_call()
        if self.fail is not None:
            raise self.fail
        result = FetchResult()
        for s in symbols:
            if s in self.reject:
                result.rejected[s] = f"{self.name}: unknown symbol {s}"
            else:
                priced = quote(s, self.name)
                result.quotes.append(
                    replace(priced, exchange=self.exchange, market_open=self.market_open)
                )
        return result
