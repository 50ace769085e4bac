"""An ordered failover chain of real providers, itself a Feed.

Each symbol goes to the first provider of `FEEDS` that can price it (`check_symbol`) and can be
called now; when that provider fails (down, circuit open, quota gone, key refused) its symbols go
to the next one in the same poll. Symbols no provider could serve keep their last real quote; the
chain never raises for a provider's failure, it reports it in `status()` (stale, with the reason),
so the fetch loop stays healthy while it truthfully tells clients the data is old.

Only real providers are chained: settings refuse `simulated` or `replay` next to them.

A provider that does not say whether the market is open (Finnhub's and Alpha Vantage's quotes
carry no such flag) gets the answer from the exchange calendar (app/sessions.py), so an after-hours
quote says Closed rather than looking delayed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from app import sessions
from app.feeds.base import FeedError, FeedRateLimited, FeedRejected, FetchResult
from app.feeds.guard import CircuitOpen, GuardedProvider, QuotaBlocked, QuotaUnknown
from app.models import LIVE, FeedStatus, Quote

log = logging.getLogger(__name__)


def _reason(exc: Exception) -> str:
    if isinstance(exc, FeedRateLimited):
        return "rate_limited"
    if isinstance(exc, CircuitOpen):
        return "circuit_open"
    if isinstance(exc, QuotaUnknown):
        return "quota_unknown"
    if isinstance(exc, FeedRejected):
        return "provider_refused"
    return "provider_down"


def with_market_flag(quote: Quote, now: datetime) -> Quote:
    """`quote`, its unknown market-open flag filled from its exchange's calendar at `now`."""
    if quote.market_open is not None:
        return quote
    state = sessions.is_open(quote.exchange, now)
    return quote if state is None else replace(quote, market_open=state)


class FeedChain:
    def __init__(
        self, providers: Sequence[GuardedProvider], clock: Callable[[], float] = time.time
    ) -> None:
        if not providers:
            raise ValueError("a feed chain needs at least one provider")
        self.providers = tuple(providers)
        self.name = ",".join(p.name for p in self.providers)
        self._clock = clock
        self._status = LIVE
        self._last_success: int | None = None

    def check_symbol(self, symbol: str) -> str | None:
        reasons = []
        for provider in self.providers:
            reason = provider.check_symbol(symbol)
            if reason is None:
                return None
            reasons.append(reason)
        return "; ".join(reasons)

    def status(self) -> FeedStatus:
        return self._status

    def refresh_interval(self, symbols: int, poll_interval: float) -> float:
        return self.providers[0].refresh_interval(symbols, poll_interval)

    def describe(self) -> dict[str, Any]:
        return {p.name: p.describe() for p in self.providers}

    async def fetch(self, symbols: Sequence[str]) -> FetchResult:
        result = FetchResult()
        remaining = list(symbols)
        failures: list[tuple[str, Exception]] = []
        served_by: list[str] = []
        for provider in self.providers:
            mine = [s for s in remaining if provider.check_symbol(s) is None]
            if not mine:
                continue
            try:
                got = await provider.fetch(mine)
            except FeedError as exc:
                failures.append((provider.name, exc))
                # An open circuit, a spent or unreachable quota was logged when it happened.
                quiet = isinstance(exc, CircuitOpen | QuotaBlocked | QuotaUnknown)
                log.log(
                    logging.DEBUG if quiet else logging.WARNING,
                    "%s failed, trying the next provider: %s",
                    provider.name,
                    exc,
                )
                continue
            except Exception:  # an adapter bug must not take the others down
                log.exception("%s raised an unexpected error", provider.name)
                failures.append((provider.name, FeedError(f"{provider.name}: internal error")))
                continue
            now = datetime.fromtimestamp(self._clock(), UTC)
            result.quotes.extend(with_market_flag(q, now) for q in got.quotes)
            result.rejected.update(got.rejected)
            served_by.append(provider.name)
            if got.quotes:
                self._last_success = int(self._clock() * 1000)
            taken = set(mine)
            remaining = [s for s in remaining if s not in taken]
            if not remaining:
                break
        self._status = self._summarise(served_by, failures, bool(remaining), bool(result.quotes))
        return result

    def _summarise(
        self,
        served_by: list[str],
        failures: list[tuple[str, Exception]],
        unserved: bool,
        priced: bool,
    ) -> FeedStatus:
        if not failures:
            # A poll that priced nothing (no symbol due under quota pacing) is no news: a stale
            # status stays stale until a real quote comes back.
            return LIVE if priced else self._status
        name, exc = failures[0]
        retry = exc.retry_after if isinstance(exc, FeedRateLimited) else None
        if unserved or not served_by:
            detail = "; ".join(str(e) for _, e in failures)
            return FeedStatus("stale", _reason(exc), name, self._last_success, retry, detail)
        return FeedStatus(
            "live", "failover", served_by[0], self._last_success, None, f"{name}: {_reason(exc)}"
        )
