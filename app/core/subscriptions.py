"""Who watches what in this process: the one owner of subscriptions, and their report.

A WebSocket connection's symbols (its outbox's set, changed only here), the waits of long-polls and
page renders (app.core.waiters), and the symbols long-poll clients asked for lately (kept watched
`poll_linger` seconds after a poll returns, until the client's next poll) make this replica's
subscriptions. The fan-out's cohorts (app.core.fanout) are an index of the connections' sets,
regrouped here on every change.

They are reported to the subscription registry on change (coalesced) and on every lease refresh,
and newly watched symbols are announced on `market-data:subscriptions`, so the fetcher prices them
at once. A symbol nobody has priced yet is reported only once app.core.admission gives one of its
clients room for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from app.core.acceptance import Acceptance
from app.core.admission import Admission
from app.core.fanout import Fanout
from app.core.latest import LatestQuotes
from app.core.outbox import Outbox
from app.core.waiters import Waiter, Waiters
from app.models import SubscriptionChange
from app.pubsub.base import SUBSCRIPTIONS_CHANNEL, Bus, BusUnavailable, SubscriptionRegistry
from app.supervise import wait_event

log = logging.getLogger(__name__)

# Changes to the local subscription set are reported at most this often.
REPORT_COALESCE = 0.05


class Subscriptions:
    def __init__(
        self,
        replica_id: str,
        latest: LatestQuotes,
        *,
        lease_refresh: float,
        poll_linger: float,
        admission: Admission,
        acceptance: Acceptance,
        replicas: Callable[[], int] = lambda: 1,
    ) -> None:
        self._replica_id = replica_id
        self._latest = latest
        self._lease_refresh = lease_refresh
        self._poll_linger = poll_linger
        self.admission = admission
        self._acceptance = acceptance
        self._replicas = replicas  # live replicas, for this one's share of admissions
        self.fanout = Fanout(latest.encoded)
        self.waiters = Waiters()
        self._recent_polls: dict[str, float] = {}
        self._dirty = asyncio.Event()
        self._reported: set[str] = set()
        self.last_report: float | None = None

    # ---- changes -----------------------------------------------------------------------------

    def watch(self, outbox: Outbox, symbols: Iterable[str]) -> None:
        symbols = [s for s in symbols if s not in outbox.symbols]
        outbox.symbols.update(symbols)
        self.fanout.regroup(outbox)
        self._want(outbox.client, symbols)

    def unwatch(self, outbox: Outbox, symbols: Sequence[str]) -> None:
        symbols = [s for s in symbols if s in outbox.symbols]
        outbox.symbols.difference_update(symbols)
        self.fanout.regroup(outbox)
        outbox.forget(symbols)
        self.admission.unwant(outbox.client, symbols)
        self._dirty.set()

    def wait_for(self, symbols: Sequence[str], client: str) -> Waiter:
        """Register a wait for `symbols` (end it with `end_wait`)."""
        waiter = self.waiters.add(symbols, client)
        self._want(client, list(waiter.symbols))
        return waiter

    def end_wait(self, waiter: Waiter) -> None:
        self.waiters.remove(waiter)
        self.admission.unwant(waiter.client, list(waiter.symbols))
        self._dirty.set()

    def _want(self, client: str, symbols: Sequence[str]) -> None:
        latest, acceptance = self._latest, self._acceptance
        unpriced = [s for s in symbols if s not in latest and not acceptance.refused(s)]
        if unpriced:
            self.admission.want(client, unpriced)
        self._dirty.set()

    def reject(self, symbol: str) -> list[Outbox]:
        """`symbol` cannot be priced: every subscription to it ends (its waiters are woken);
        returns the connections that watched it, to be told."""
        self.admission.settled([symbol])
        outboxes = list(self.fanout.members_watching(symbol))
        for outbox in outboxes:
            self.unwatch(outbox, [symbol])
        for waiter in self.waiters.reject(symbol):
            self.admission.unwant(waiter.client, [symbol])
        return outboxes

    def note_poll(self, symbols: Iterable[str]) -> None:
        """A long-poll client asked for `symbols`: keep them watched a while after it returns."""
        until = time.monotonic() + self._poll_linger
        for symbol in symbols:
            if symbol not in self._recent_polls:
                self._dirty.set()
            self._recent_polls[symbol] = until

    def changed(self) -> None:
        """Report again soon (the registry may have lost our lease while we were away)."""
        self._dirty.set()

    # ---- counts ------------------------------------------------------------------------------

    def local_counts(self) -> dict[str, int]:
        """Subscribers per symbol in this process: connections and waits."""
        counts = self.fanout.counts()
        for symbol, n in self.waiters.counts().items():
            counts[symbol] = counts.get(symbol, 0) + n
        return counts

    def reported_counts(self) -> dict[str, int]:
        """Subscribers per symbol on this replica, as reported to the registry: a recently
        polled symbol counts at least once, and a symbol nobody has priced yet is left out until
        one of its clients is given room for it (app.core.admission)."""
        counts = self.local_counts()
        now = time.monotonic()
        for symbol, until in list(self._recent_polls.items()):
            if until < now:
                del self._recent_polls[symbol]
                self._dirty.set()
            else:
                counts[symbol] = max(counts.get(symbol, 0), 1)
        admission = self.admission
        if not admission.enabled:
            return counts
        admission.share(self._replicas())
        admission.refill()
        latest = self._latest
        # A never-priced symbol counts its clients, not their connections: opening more
        # connections buys no place in the fetcher's order.
        return {
            s: n if s in latest else admission.demand(s)
            for s, n in counts.items()
            if s in latest or admission.admitted(s)
        }

    # ---- the report --------------------------------------------------------------------------

    async def report_loop(self, bus: Bus, registry: SubscriptionRegistry) -> None:
        while True:
            await wait_event(self._dirty, self._lease_refresh)
            await asyncio.sleep(REPORT_COALESCE)
            self._dirty.clear()
            counts = self.reported_counts()
            try:
                await self._report(bus, registry, counts)
            except BusUnavailable as exc:
                log.warning("subscription report failed, will retry: %s", exc)
                await asyncio.sleep(min(1.0, self._lease_refresh))
                self._dirty.set()

    async def _report(
        self, bus: Bus, registry: SubscriptionRegistry, counts: Mapping[str, int]
    ) -> None:
        await registry.report(self._replica_id, counts)
        added = tuple(sorted(counts.keys() - self._reported))
        removed = tuple(sorted(self._reported - counts.keys()))
        if added or removed:
            change = SubscriptionChange(self._replica_id, added, removed)
            await bus.publish(SUBSCRIPTIONS_CHANNEL, change.encode())
        self._reported = set(counts)
        self.last_report = time.monotonic()

    async def withdraw(self, registry: SubscriptionRegistry) -> None:
        """Clean shutdown: take this replica's subscriptions out of the registry at once."""
        try:
            await registry.withdraw(self._replica_id)
        except BusUnavailable as exc:
            log.warning("could not withdraw subscriptions (they expire by lease): %s", exc)
