"""Symbols a provider called unpriceable, each remembered with its reason until it may be retried.

The fetcher keeps one (so it does not ask again) and every replica's acceptance keeps one
(app.core.acceptance, so it refuses new subscriptions at once). Expired entries go on lookup
and, so junk symbols cannot pile up, in a sweep whenever the table has doubled since the last one.
"""

from __future__ import annotations

import time
from collections.abc import Callable

_FIRST_SWEEP = 1024


class Cooldowns:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[str, tuple[str, float]] = {}  # symbol -> (reason, retry at)
        self._sweep_at = _FIRST_SWEEP

    def add(self, symbol: str, reason: str, seconds: float) -> None:
        self._entries[symbol] = (reason, self._clock() + seconds)
        if len(self._entries) >= self._sweep_at:
            now = self._clock()
            self._entries = {s: e for s, e in self._entries.items() if e[1] > now}
            self._sweep_at = max(_FIRST_SWEEP, 2 * len(self._entries))

    def reason(self, symbol: str) -> str | None:
        """Why `symbol` is cooling down, or None if it is not (any more)."""
        entry = self._entries.get(symbol)
        if entry is None:
            return None
        if entry[1] <= self._clock():
            del self._entries[symbol]
            return None
        return entry[0]

    def remaining(self, symbol: str) -> float:
        """Seconds until `symbol` may be tried again (0 if it may now)."""
        entry = self._entries.get(symbol)
        return 0.0 if entry is None else max(entry[1] - self._clock(), 0.0)

    def __len__(self) -> int:
        return len(self._entries)
