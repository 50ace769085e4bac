"""One real provider behind its quota and its circuit breaker.

`GuardedProvider` wraps a raw adapter (which only speaks HTTP and maps shapes) and decides, per
poll, whether it may call at all (not disabled for the day, not paused for the minute, breaker
not open) and which of the symbols are due (the `Pacer`). The breaker counts a failure only for
errors that say the provider is unhealthy: a rate limit is the quota's business and a rejected
symbol is not an error at all (it comes back in `FetchResult.rejected`).

pybreaker does not count failures of a decorated `async def` (the coroutine is returned before it
runs), so the call is awaited inside `with breaker.calling():`.

The quota may be shared through Redis (see `app.feeds.quota`). When it cannot be read or charged,
no call is made (`QuotaUnknown`): an uncounted call could overspend the provider's quota for the
fetcher after us, and with Redis down this fetcher could not publish what it fetched anyway.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import pybreaker

from app.feeds.base import FeedRateLimited, FeedUnavailable, FetchResult
from app.feeds.quota import Pacer, Quota
from app.pubsub.base import BusUnavailable
from app.supervise import reraise_if_cancelling

log = logging.getLogger(__name__)


class CircuitOpen(FeedUnavailable):
    """The provider's breaker is open: no call was made."""


class QuotaBlocked(FeedRateLimited):
    """The provider is paused or disabled by its quota: no call was made."""


class QuotaUnknown(FeedUnavailable):
    """The shared quota could not be read or charged (Redis down): no call was made."""


class Adapter(Protocol):
    """A provider's HTTP client: maps one request per poll to `FetchResult` or a `FeedError`."""

    name: str

    def check_symbol(self, symbol: str) -> str | None: ...

    async def fetch(self, symbols: Sequence[str]) -> FetchResult: ...


def _not_a_failure(exc: BaseException) -> bool:
    return isinstance(exc, FeedRateLimited | asyncio.CancelledError)


class _LogTransitions(pybreaker.CircuitBreakerListener):
    def state_change(self, cb: Any, old_state: Any, new_state: Any) -> None:
        old = old_state.name if old_state is not None else None
        level = logging.WARNING if new_state.name == "open" else logging.INFO
        log.log(level, "circuit breaker of %s: %s -> %s", cb.name, old, new_state.name)


def make_breaker(name: str, fail_max: int, reset_timeout: float) -> pybreaker.CircuitBreaker:
    return pybreaker.CircuitBreaker(
        fail_max=fail_max,
        reset_timeout=reset_timeout,
        exclude=[_not_a_failure],
        listeners=[_LogTransitions()],
        name=name,
        throw_new_error_on_trip=False,
    )


class GuardedProvider:
    def __init__(
        self,
        adapter: Adapter,
        quota: Quota,
        breaker: pybreaker.CircuitBreaker,
        clock: Callable[[], float] = time.time,
        poll_interval: float = 2.0,
        per_poll: int | None = None,
        call_timeout: float | None = None,
    ) -> None:
        self.adapter = adapter
        # The whole call's deadline (httpx's timeouts are per phase, so a slow trickle could
        # outlast the poll): it must expire inside the breaker, where it counts as a failure.
        self.call_timeout = call_timeout
        # At most this many symbols per poll (one-call-per-symbol providers with burst limits).
        self.per_poll = per_poll
        self.name = adapter.name
        self.quota = quota
        self.breaker = breaker
        self.pacer = Pacer(quota.per_minute, clock, poll_interval)
        self.last_error: str | None = None
        self.quota_reachable = True
        # Calls by outcome (ok, rate_limited, error, cancelled; no call made: quota_blocked,
        # quota_unknown, circuit_open), for /metrics.
        self.outcomes: dict[str, int] = {}

    def check_symbol(self, symbol: str) -> str | None:
        return self.adapter.check_symbol(symbol)

    def refresh_interval(self, symbols: int, poll_interval: float) -> float:
        return self.pacer.refresh_interval(symbols, poll_interval)

    async def fetch(self, symbols: Sequence[str]) -> FetchResult:
        """Fetch the due subset of `symbols`; `FeedRateLimited`, `CircuitOpen` or `QuotaUnknown`
        if none may go."""
        try:
            result = await self._fetch(symbols)
        except QuotaBlocked:
            self._count("quota_blocked")
            raise
        except CircuitOpen:
            self._count("circuit_open")
            raise
        except QuotaUnknown:
            self._count("quota_unknown")
            raise
        except FeedRateLimited:
            self._count("rate_limited")
            raise
        except Exception:
            self._count("error")
            raise
        if result is None:  # nothing was due: no call made, nothing to count
            return FetchResult()
        self._count("ok")
        return result

    def _count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    async def _fetch(self, symbols: Sequence[str]) -> FetchResult | None:
        """The provider's answer, or None when no symbol was due (no call made)."""
        try:
            await self.quota.sync()
        except BusUnavailable as exc:
            raise self._quota_unknown(exc) from None
        if not self.quota_reachable:
            log.info("%s: the shared quota answers again", self.name)
            self.quota_reachable = True
        block = self.quota.blocked()
        if block is not None:
            scope, wait = block
            raise QuotaBlocked(f"{self.name}: {scope} quota used up", wait, scope)
        limit = self.quota.remaining()
        if self.per_poll is not None:
            limit = min(limit, self.per_poll)
        picked = self.pacer.select(symbols, limit)
        if not picked:
            return None
        # Counted before the call: a request the provider answers with an error may still cost.
        try:
            spent = await self.quota.take(len(picked))
        except BusUnavailable as exc:
            self.pacer.requeue(picked)
            raise self._quota_unknown(exc) from None
        if spent < len(picked):  # another fetcher spent since our sync (a lease overlap)
            self.pacer.requeue(picked[spent:])
            picked = picked[:spent]
            if not picked:
                return None
        try:
            with self.breaker.calling():
                result = await self._call(picked)
        except asyncio.CancelledError:
            # The poll's time ran out (or the process stops) mid-call: the request may have
            # reached the provider and cost a credit, so it is a call made, counted as such.
            self._count("cancelled")
            raise
        except pybreaker.CircuitBreakerError:
            self.pacer.requeue(picked)  # short-circuited: nothing was sent, their turn stays
            await self._quietly(self.quota.give_back(len(picked)), "refund (it stays charged)")
            raise CircuitOpen(f"{self.name}: circuit open after repeated failures") from None
        except FeedRateLimited as exc:
            if exc.scope == "day":
                self.quota.disable_for_day()
                log.warning("%s: daily quota exhausted, disabled until reset: %s", self.name, exc)
            else:
                self.quota.pause(exc.retry_after)
                log.warning("%s: minute quota exhausted, waiting for next window", self.name)
            self.last_error = str(exc)
            await self._quietly(self.quota.share(), "stop (written again next poll)")
            raise
        except Exception as exc:
            self.last_error = str(exc)
            raise
        self.last_error = None
        if result.credits_left == 0:
            self.quota.fill_minute()  # its count beats ours: no call sure to be refused
            await self._quietly(self.quota.share(), "spent minute (written again next poll)")
        return result

    def _quota_unknown(self, exc: BusUnavailable) -> QuotaUnknown:
        if self.quota_reachable:
            log.warning(
                "%s: shared quota unreachable, no calls until it answers: %s", self.name, exc
            )
            self.quota_reachable = False
        self.last_error = f"{self.name}: shared quota unreachable"
        return QuotaUnknown(f"{self.last_error}; no call made")

    async def _quietly(self, write: Awaitable[None], what: str) -> None:
        """A ledger write after the call: a failure is logged, this process's view keeps it."""
        try:
            await write
        except BusUnavailable as exc:
            log.warning("%s: shared quota not updated, %s: %s", self.name, what, exc)

    async def _call(self, symbols: Sequence[str]) -> FetchResult:
        if self.call_timeout is None:
            return await self.adapter.fetch(symbols)
        try:
            async with asyncio.timeout(self.call_timeout):
                return await self.adapter.fetch(symbols)
        except TimeoutError:
            reraise_if_cancelling()
            raise FeedUnavailable(
                f"{self.name}: no complete answer within {self.call_timeout:.2g}s"
            ) from None

    def describe(self) -> dict[str, Any]:
        return {
            "breaker": self.breaker.current_state,
            "failures": self.breaker.fail_counter,
            "quota": self.quota.describe(),
            "last_error": self.last_error,
            "calls": dict(self.outcomes),
        }
