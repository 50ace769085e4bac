"""Waits for quotes: long-polls and page renders that need a symbol's next price.

A waiter is not a connection: it has no outbox, is never sent anything, and is not counted among
the connections in /metrics. It is rung when a quote of one of its symbols is delivered, when one
of them is rejected, and on drain. While it waits, its symbols count as subscriptions
(app.core.subscriptions), so the fetcher prices them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


class Waiter:
    __slots__ = ("symbols", "client", "_rung")

    def __init__(self, symbols: Iterable[str], client: str) -> None:
        self.symbols = set(symbols)
        self.client = client  # who waits (app.core.admission.client_key), for fair admission
        self._rung = asyncio.Event()

    def ring(self) -> None:
        self._rung.set()

    async def wait(self) -> None:
        """Until rung (at once if it was rung since the last wait)."""
        await self._rung.wait()
        self._rung.clear()


class Waiters:
    """Every waiter of this process, indexed by symbol."""

    def __init__(self) -> None:
        self._by_symbol: dict[str, set[Waiter]] = {}
        self._all: set[Waiter] = set()

    def __len__(self) -> int:
        return len(self._all)

    def add(self, symbols: Iterable[str], client: str) -> Waiter:
        waiter = Waiter(symbols, client)
        self._all.add(waiter)
        for symbol in waiter.symbols:
            self._by_symbol.setdefault(symbol, set()).add(waiter)
        return waiter

    def remove(self, waiter: Waiter) -> None:
        self._all.discard(waiter)
        self._drop(waiter, list(waiter.symbols))

    def _drop(self, waiter: Waiter, symbols: Iterable[str]) -> None:
        for symbol in symbols:
            waiting = self._by_symbol.get(symbol)
            if waiting is not None:
                waiting.discard(waiter)
                if not waiting:
                    del self._by_symbol[symbol]

    def ring(self, symbols: Iterable[str]) -> None:
        """News of `symbols` (a quote delivered): wake whoever waits for one of them."""
        by_symbol = self._by_symbol
        for symbol in symbols:
            waiting = by_symbol.get(symbol)
            if waiting:
                for waiter in waiting:
                    waiter.ring()

    def reject(self, symbol: str) -> list[Waiter]:
        """`symbol` cannot be priced: wake its waiters, which stop waiting for it."""
        waiting = list(self._by_symbol.get(symbol, ()))
        for waiter in waiting:
            waiter.ring()
            waiter.symbols.discard(symbol)
            self._drop(waiter, [symbol])
        return waiting

    def ring_all(self) -> None:
        for waiter in self._all:
            waiter.ring()

    def counts(self) -> dict[str, int]:
        """Waiters per symbol."""
        return {symbol: len(waiting) for symbol, waiting in self._by_symbol.items()}
