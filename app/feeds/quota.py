"""Provider quotas: credits per wall-clock minute and per UTC day, and pacing within them.

`Quota` is the hard limit: it counts credits spent in the current minute and day windows and
knows when the provider told us to stop (a minute 429 pauses it until the next window; a daily
429 disables it until the next UTC midnight). A call is only made when the windows have room for
all of it, so no call is made that is sure to be refused.

With a `QuotaLedger` (the composition root always passes the backend's) the counts and the stops
are shared: every replica's fetcher reads and charges the same record, so the one that takes the
lease over after a failover goes on from the previous one's count instead of from zero. Its own
view (the sync methods) is then a copy refreshed by every `sync`/`take`, and never below what
it learnt itself: what the ledger lost (a Redis restart) or missed (an outage) is written back
at the next `sync`. Without a ledger the view is the whole truth (one process; unit tests).

`Pacer` spreads symbols over time so the long-run rate stays within the per-minute budget: it
accrues `per_minute / 60` credits a second and, each poll, picks the least recently fetched
symbols that the accrued credits pay for (round-robin). With `n` symbols and a budget of `b` a
minute, each symbol is refreshed every `max(poll interval, n * 60 / b)` seconds.

Both take an injected wall clock (`time.time`), so tests drive time by hand. Every symbol costs
one credit (true of Twelve Data's batch, and of Finnhub's and Alpha Vantage's one-symbol calls).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from app.feeds.ledger import DAY, MINUTE, QuotaLedger, QuotaUsage, quota_windows


class Quota:
    """Hard per-minute and per-day limits; a limit of 0 means none.

    The sync methods read and change this process's view. The async ones are what a fetcher
    uses: they also go through the ledger when there is one, and raise `BusUnavailable` when it
    cannot be reached. `fresh_for`: seconds for which a view synced with the ledger is current
    (a fetcher syncs every poll; a follower's view is only what it last saw).
    """

    def __init__(
        self,
        per_minute: int,
        per_day: int,
        clock: Callable[[], float] = time.time,
        *,
        ledger: QuotaLedger | None = None,
        provider: str = "",
        fresh_for: float = 10.0,
    ) -> None:
        self.per_minute = per_minute
        self.per_day = per_day
        self.provider = provider
        self.fresh_for = fresh_for
        self._clock = clock
        self._ledger = ledger
        self._minute = -1
        self._day = -1
        self.used_minute = 0
        self.used_day = 0
        self.paused_until = 0.0
        self.disabled_until = 0.0
        self.synced_at: float | None = None  # clock time of the last exchange with the ledger

    def _roll(self) -> float:
        now = self._clock()
        minute, day = quota_windows(now)
        if minute != self._minute:
            self._minute, self.used_minute = minute, 0
        if day != self._day:
            self._day, self.used_day = day, 0
        return now

    def remaining(self) -> int:
        """Credits that may be spent right now (0 while paused or disabled)."""
        now = self._roll()
        if now < self.paused_until or now < self.disabled_until:
            return 0
        left = [self.per_minute - self.used_minute] if self.per_minute else []
        if self.per_day:
            left.append(self.per_day - self.used_day)
        return max(min(left), 0) if left else 1 << 30

    def blocked(self) -> tuple[str, float] | None:
        """(`day` or `minute`, seconds until it lifts) when the provider is out of service.

        That is: its daily quota is spent (by our count or by its word), or it refused for its
        minute limit. A minute window merely filled by pacing is not a block: `remaining()` is
        0 and the pacer waits for the next window.
        """
        now = self._roll()
        if now < self.disabled_until or (self.per_day and self.used_day >= self.per_day):
            return "day", max(self.disabled_until, (self._day + 1) * DAY) - now
        if now < self.paused_until:
            return "minute", self.paused_until - now
        return None

    def spend(self, credits: int) -> None:
        self._roll()
        self.used_minute += credits
        self.used_day += credits

    def fill_minute(self) -> None:
        """The provider says this minute's credits are gone (another client on the same key?)."""
        self._roll()
        self.used_minute = max(self.used_minute, self.per_minute)

    def pause(self, retry_after: float) -> None:
        """The provider refused for its minute limit: nothing more until the next window."""
        now = self._roll()
        self.paused_until = max(now + retry_after, (self._minute + 1) * MINUTE)

    def disable_for_day(self) -> None:
        """The provider's daily quota is gone: nothing more until the next UTC day."""
        now = self._roll()
        # Twelve Data does not document its daily reset; UTC midnight is the common reading.
        self.disabled_until = max(now, (self._day + 1) * DAY)

    # ---- through the ledger ------------------------------------------------------------------

    async def sync(self) -> None:
        """Adopt the shared record of the current windows, and write back what it lacks."""
        if self._ledger is None:
            return
        now = self._roll()
        shared = await self._ledger.read(self.provider, now)
        self._adopt(now, shared)
        if self._ahead_of(shared, now):
            await self._ledger.merge(self.provider, now, self._view(now))

    async def take(self, credits: int) -> int:
        """Spend up to `credits` now: as many as the windows have room for (all of them unless
        another fetcher spent meanwhile); returns how many were spent."""
        now = self._roll()
        if self._ledger is None:
            spent = max(min(credits, self.remaining()), 0)
            self.spend(spent)
            return spent
        spent, shared = await self._ledger.take(
            self.provider, now, credits, self.per_minute, self.per_day
        )
        self._adopt(now, shared)
        return spent

    async def give_back(self, credits: int) -> None:
        """Undo `take(credits)` for a call that was never sent (the view is corrected first)."""
        now = self._roll()
        self.spend(-credits)
        if self._ledger is not None:
            await self._ledger.give_back(self.provider, now, credits)

    async def share(self) -> None:
        """Record this view in the ledger: after `pause`, `disable_for_day` or `fill_minute`."""
        if self._ledger is not None:
            now = self._roll()
            await self._ledger.merge(self.provider, now, self._view(now))
            self.synced_at = now

    def current(self) -> bool:
        """Whether this view is the provider's state now (always, without a ledger)."""
        if self._ledger is None:
            return True
        return self.synced_at is not None and self._clock() - self.synced_at < self.fresh_for

    def _adopt(self, now: float, shared: QuotaUsage) -> None:
        if quota_windows(now) == (self._minute, self._day):  # not rolled on while we waited
            self.used_minute = max(self.used_minute, shared.used_minute)
            self.used_day = max(self.used_day, shared.used_day)
        self.paused_until = max(self.paused_until, shared.paused_until)
        self.disabled_until = max(self.disabled_until, shared.disabled_until)
        self.synced_at = now

    def _view(self, now: float) -> QuotaUsage:
        return QuotaUsage(
            self.used_minute,
            self.used_day,
            self.paused_until if self.paused_until > now else 0.0,
            self.disabled_until if self.disabled_until > now else 0.0,
        )

    def _ahead_of(self, shared: QuotaUsage, now: float) -> bool:
        mine = self._view(now)
        return (
            mine.used_minute > shared.used_minute
            or mine.used_day > shared.used_day
            # The ledger keeps milliseconds.
            or mine.paused_until > shared.paused_until + 0.001
            or mine.disabled_until > shared.disabled_until + 0.001
        )

    def describe(self) -> dict[str, Any]:
        self._roll()
        block = self.blocked()
        return {
            "calls_per_minute": self.per_minute or None,
            "calls_per_day": self.per_day or None,
            "used_this_minute": self.used_minute,
            "used_today": self.used_day,
            "blocked": block[0] if block else None,
            "blocked_for_seconds": round(block[1], 1) if block else None,
            "shared": self._ledger is not None,
            "current": self.current(),
        }


class Pacer:
    """Round-robin selection of the symbols whose turn it is, within a per-minute budget."""

    def __init__(
        self, per_minute: int, clock: Callable[[], float] = time.time, poll_interval: float = 2.0
    ) -> None:
        self.rate = per_minute / MINUTE if per_minute else math.inf
        self.poll_interval = poll_interval
        self._clock = clock
        self._allowance: float | None = None
        self._stamp = 0.0
        self.last_fetched: dict[str, float] = {}

    def refresh_interval(self, symbols: int, poll_interval: float) -> float:
        if symbols <= 0 or math.isinf(self.rate):
            return poll_interval
        return max(poll_interval, symbols / self.rate)

    def select(self, symbols: Sequence[str], limit: int) -> list[str]:
        """Up to `limit` of `symbols` to fetch now, least recently fetched first."""
        now = self._clock()
        count = len(symbols)
        if count <= self.rate * self.poll_interval:
            allowance = float(count)  # the budget covers every symbol at every poll
        elif self._allowance is None:
            allowance = float(min(count, limit))  # the first poll prices what the window allows
        else:
            allowance = min(self._allowance + (now - self._stamp) * self.rate, max(count, 1))
        self._stamp = now
        ordered = sorted(symbols, key=lambda s: self.last_fetched.get(s, -math.inf))
        picked = ordered[: max(min(int(allowance), limit, count), 0)]
        self._allowance = allowance - len(picked)
        for symbol in picked:
            self.last_fetched[symbol] = now
        if len(self.last_fetched) > 10_000:
            self.last_fetched = {s: self.last_fetched[s] for s in symbols if s in self.last_fetched}
        return picked

    def requeue(self, symbols: Sequence[str]) -> None:
        """Picked symbols that were not fetched after all: first in line at the next poll."""
        self.last_fetched.update(dict.fromkeys(symbols, -1.0))
