"""Provider quotas: credits per wall-clock minute and per UTC day, and pacing within them.

`Quota` is the hard limit: it counts credits spent in the current minute and day windows and
knows when the provider told us to stop (a minute 429 pauses it until the next window; a daily
429 disables it until the next UTC midnight). A call is only made when the windows have room for
all of it, so no call is made that is sure to be refused.

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

MINUTE = 60.0
DAY = 86_400.0


class Quota:
    """Hard per-minute and per-day limits; a limit of 0 means none."""

    def __init__(
        self, per_minute: int, per_day: int, clock: Callable[[], float] = time.time
    ) -> None:
        self.per_minute = per_minute
        self.per_day = per_day
        self._clock = clock
        self._minute = -1
        self._day = -1
        self.used_minute = 0
        self.used_day = 0
        self.paused_until = 0.0
        self.disabled_until = 0.0

    def _roll(self) -> float:
        now = self._clock()
        minute, day = int(now // MINUTE), int(now // DAY)
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
