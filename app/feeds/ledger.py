"""The providers' quota ledger: credits spent with each provider per minute and UTC day, shared
by every replica. The port (`QuotaLedger`) and its in-process adapter; the Redis adapter is
app/feeds/ledger_redis.py. app/feeds/quota.py keeps the budgets on top of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

# A provider's quota windows: the wall-clock minute and the UTC day (epoch seconds // size).
MINUTE = 60.0
DAY = 86_400.0


def quota_windows(now: float) -> tuple[int, int]:
    """The numbers of the minute and the UTC day windows that `now` (epoch seconds) falls in."""
    return int(now // MINUTE), int(now // DAY)


@dataclass(frozen=True, slots=True)
class QuotaUsage:
    """One provider's record for one minute window and one day window.

    `used_minute` / `used_day`: credits spent in those windows. `paused_until`: epoch seconds until
    which the provider refused for its minute limit; `disabled_until`: until which its daily
    quota is gone (0 when there is no such stop).
    """

    used_minute: int = 0
    used_day: int = 0
    paused_until: float = 0.0
    disabled_until: float = 0.0


class QuotaLedger(Protocol):
    """Credits spent with each provider per minute and UTC day, and the provider's own stops.

    Shared by every replica, so a fetcher that takes the lease over after a failover continues
    the count (and honours a pause or a daily disable) instead of starting from zero. `now` is
    epoch seconds on the caller's clock; it picks the windows (`quota_windows(now)`) and sets
    expiries: a count is kept until a minute after its window ends, a stop until it lifts, so
    nothing needs cleaning up. Counts only grow (`give_back` aside) and stops only lengthen, so
    replicas with different views can each write theirs. Backend errors raise `BusUnavailable`.
    """

    async def read(self, provider: str, now: float) -> QuotaUsage:
        """The record of the windows of `now`."""
        ...

    async def take(
        self, provider: str, now: float, credits: int, per_minute: int, per_day: int
    ) -> tuple[int, QuotaUsage]:
        """Spend up to `credits` in both windows, atomically: as many as both limits leave room
        for (a limit of 0 means none), and none while a stop is in force at `now`.
        Returns (credits spent, the record after)."""
        ...

    async def give_back(self, provider: str, now: float, credits: int) -> None:
        """Undo a `take` made at `now` whose call was never sent (never below zero)."""
        ...

    async def merge(self, provider: str, now: float, usage: QuotaUsage) -> None:
        """Raise the record of the windows of `now` to at least `usage`: counts to at least its
        counts, each stop to at least its time (stops already over at `now` are ignored)."""
        ...


class MemoryQuotaLedger:
    """The quota record of the one process that is the whole cluster."""

    def __init__(self) -> None:
        # (provider, "minute" | "day", window number) -> credits spent
        self._counts: dict[tuple[str, str, int], int] = {}
        # (provider, "paused" | "disabled") -> until (epoch seconds)
        self._stops: dict[tuple[str, str], float] = {}

    async def read(self, provider: str, now: float) -> QuotaUsage:
        return self._usage(provider, now)

    async def take(
        self, provider: str, now: float, credits: int, per_minute: int, per_day: int
    ) -> tuple[int, QuotaUsage]:
        usage = self._usage(provider, now)
        spent = 0 if max(usage.paused_until, usage.disabled_until) > now else credits
        if per_minute:
            spent = min(spent, per_minute - usage.used_minute)
        if per_day:
            spent = min(spent, per_day - usage.used_day)
        spent = max(spent, 0)
        if spent:
            self._prune(now)
            for key in self._keys(provider, now):
                self._counts[key] = self._counts.get(key, 0) + spent
        return spent, self._usage(provider, now)

    async def give_back(self, provider: str, now: float, credits: int) -> None:
        for key in self._keys(provider, now):
            if key in self._counts:
                self._counts[key] = max(self._counts[key] - credits, 0)

    async def merge(self, provider: str, now: float, usage: QuotaUsage) -> None:
        self._prune(now)
        for key, count in zip(
            self._keys(provider, now), (usage.used_minute, usage.used_day), strict=True
        ):
            if count > self._counts.get(key, 0):
                self._counts[key] = count
        for kind, until in (("paused", usage.paused_until), ("disabled", usage.disabled_until)):
            if until > max(now, self._stops.get((provider, kind), 0.0)):
                self._stops[(provider, kind)] = until

    def _usage(self, provider: str, now: float) -> QuotaUsage:
        minute, day = self._keys(provider, now)
        paused, disabled = (self._stops.get((provider, k), 0.0) for k in ("paused", "disabled"))
        return QuotaUsage(
            self._counts.get(minute, 0),
            self._counts.get(day, 0),
            paused if paused > now else 0.0,
            disabled if disabled > now else 0.0,
        )

    @staticmethod
    def _keys(provider: str, now: float) -> tuple[tuple[str, str, int], tuple[str, str, int]]:
        minute, day = quota_windows(now)
        return (provider, "minute", minute), (provider, "day", day)

    def _prune(self, now: float) -> None:
        """Forget windows that ended (kept one window past, as Redis keeps them a while)."""
        minute, day = quota_windows(now)
        oldest = {"minute": minute - 1, "day": day - 1}
        for key in [k for k in self._counts if k[2] < oldest[k[1]]]:
            del self._counts[key]
