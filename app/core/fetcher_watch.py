"""Is anybody fetching for this replica's watchers? (readiness: "no live fetcher")

The fetcher says so in its heartbeat on `market-data:control`: a `fetcher` member with its lease
holder, its term and how long ago its fetch loop last completed a tick. So every replica knows
when a fetcher last *worked*, not merely when one renewed the lease: the lease keeper is a task of
its own and renews the lease even while the fetch loop is wedged, and a holder that never fetches
(a ghost left by a misconfigured process or a hand-written key) holds it too.

A replica is `stalled` when its clients watch symbols, no update message has come for
`stall_after` (five fetch intervals, at least 10 s), and no fetcher has been heard completing a
tick for as long. Silence alone never counts: in a quiet market (real providers at the weekend)
no quote changes for hours while the fetcher keeps announcing its ticks. Both clocks start at the
listener's (re)connect, since nothing could be heard before it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

STALL_INTERVALS = 5
STALL_FLOOR = 10.0  # seconds


@dataclass(frozen=True, slots=True)
class Announcement:
    """A fetcher's `fetcher` heartbeat member: its lease `holder`, its `term`, and `tick_age`,
    the seconds since its fetch loop last completed a tick (when it sent the heartbeat)."""

    holder: str
    term: int
    tick_age: float

    def to_dict(self) -> dict[str, Any]:
        return {"holder": self.holder, "term": self.term, "tick_age": round(self.tick_age, 3)}

    @classmethod
    def parse(cls, data: object) -> Announcement | None:
        """The announcement in a heartbeat's `fetcher` member; None if it is not one."""
        if not isinstance(data, Mapping):
            return None
        holder, term, age = data.get("holder"), data.get("term"), data.get("tick_age")
        if not isinstance(holder, str) or not 0 < len(holder) <= 256:
            return None
        if not isinstance(term, int) or isinstance(term, bool):
            return None
        if not isinstance(age, int | float) or isinstance(age, bool) or not math.isfinite(age):
            return None
        return cls(holder, term, max(float(age), 0.0))


@dataclass(frozen=True, slots=True)
class Stall:
    watched: int  # symbols this replica's clients watch
    quiet_for: float  # seconds without an update message
    silent_for: float  # seconds since a fetcher was last heard completing a tick


class FetcherWatch:
    def __init__(self, interval: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval  # the fetch interval
        self.stall_after = max(STALL_INTERVALS * interval, STALL_FLOOR)
        self._clock = clock
        self._since = clock()  # the listener's (re)connect: silence counts from here at most
        self.ticked_at: float | None = None  # when the freshest tick we heard of completed
        self.updated_at: float | None = None  # when the last update message came
        self.last: Announcement | None = None  # the last announcement heard

    def listening(self) -> None:
        """The listener (re)subscribed: silence counts from now."""
        self._since = self._clock()

    def heard(self, data: object) -> None:
        """A heartbeat's `fetcher` member arrived (malformed ones are ignored)."""
        announcement = Announcement.parse(data)
        if announcement is None:
            return
        ticked = self._clock() - announcement.tick_age
        if self.ticked_at is None or ticked >= self.ticked_at:
            self.ticked_at = ticked
            self.last = announcement

    def update_heard(self) -> None:
        """An update message (quotes, a status, rejections) arrived from the fetcher."""
        self.updated_at = self._clock()

    def stalled(self, watched: int) -> Stall | None:
        """A Stall when `watched` symbols get nothing and nobody is heard fetching, else None."""
        if watched <= 0:
            return None
        now = self._clock()
        quiet = now - max(self._since, self.updated_at or -math.inf)
        silent = now - max(self._since, self.ticked_at or -math.inf)
        if min(quiet, silent) < self.stall_after:
            return None
        return Stall(watched, quiet, silent)

    def describe(self) -> dict[str, Any]:
        """For `/ready` details: the last fetcher heard and the ages of its tick and of the last
        update message (seconds; None when never heard)."""
        now = self._clock()
        return {
            "holder": self.last.holder if self.last else None,
            "term": self.last.term if self.last else None,
            "last_tick_age": _age(now, self.ticked_at),
            "last_update_age": _age(now, self.updated_at),
        }


def _age(now: float, at: float | None) -> float | None:
    return None if at is None else round(now - at, 2)
