"""The hub: who watches what in this process, and the fan-out from the bus to their outboxes.

One listener per process reads `market-data:updates`, decodes each quote once, keeps those newer
than any it has seen (so no client ever gets an older price after a newer one) and hands them to
the fan-out (`app.core.fanout`), which builds each frame once per group of clients watching the same
symbols and writes it without awaiting anyone.

The hub also reports this replica's per-symbol counts to the subscription registry (on change and
on every lease refresh) and announces newly watched symbols on `market-data:subscriptions`, so
the fetcher prices them at once.

When the bus connection drops, clients are told the data is delayed; when it comes back, every
watched symbol's snapshot is re-read and newer ones are pushed, since pub/sub lost what was
published meanwhile. A listener can also go deaf without an error (a killed subscriber connection
that looks open): `app.core.heartbeat` notices when our own heartbeat stops coming back, and the hub
then rebuilds the listener (readiness fails meanwhile). No Starlette here: the hub is tested on
the in-memory backend alone.

Update messages may also carry the fetcher's feed `status` (forwarded to every client when it
changes) and `rejected` symbols (told to their watchers, whose subscription to them then ends).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from app.core.acceptance import Acceptance
from app.core.admission import Admission
from app.core.fanout import Fanout
from app.core.fetcher_watch import FetcherWatch
from app.core.heartbeat import Announce, ListenerHealth
from app.core.outbox import Outbox, WireFormat
from app.logbudget import client_noise
from app.models import (
    LIVE,
    FeedStatus,
    Quote,
    QuoteDecodeError,
    SubscriptionChange,
    UpdateDecodeError,
    decode_quote,
    is_newer,
    parse_update,
)
from app.pubsub import Backend
from app.pubsub.base import (
    CONTROL_CHANNEL,
    SUBSCRIPTIONS_CHANNEL,
    UPDATES_CHANNEL,
    BusUnavailable,
)
from app.supervise import cancel_together, reraise_if_cancelling, wait_event

log = logging.getLogger(__name__)

# A waiter's outbox only rings (on a new quote, and on a rejection of a watched symbol): it is
# never sent, so nothing is encoded for it.
_DOORBELL = WireFormat(
    "doorbell",
    lambda quote: "",
    lambda kind, texts: "",
    lambda status: None,
    rejected=lambda symbol, reason, source: "",
)

WS_1012_SERVICE_RESTART = 1012  # the close code's value; the hub imports nothing of Starlette

# Changes to the local subscription set are reported at most this often.
REPORT_COALESCE = 0.05


class Hub:
    def __init__(
        self,
        backend: Backend,
        replica_id: str,
        *,
        lease_refresh: float,
        poll_linger: float,
        heartbeat: float = 1.0,
        nonce: str | None = None,
        fetchers: FetcherWatch | None = None,
        announce: Announce | None = None,
        admission: Admission | None = None,
        acceptance: Acceptance | None = None,
    ) -> None:
        self._backend = backend
        # Is anybody fetching for our watchers? Fed by heartbeats and update messages.
        self.fetchers = fetchers or FetcherWatch(2.0)
        # `announce`: what our heartbeat says about our own fetching (the fetcher's view).
        self.health = ListenerHealth(
            replica_id, nonce, heartbeat, announce=announce, on_fetcher=self.fetchers.heard
        )
        # Which never-priced symbols this replica may report (so the fetcher prices them).
        self.admission = admission or Admission(1, 1, enabled=False)
        # The fetcher's effective per-symbol refresh interval, as its last message said.
        self.refresh: float | None = None
        self._replica_id = replica_id
        self._lease_refresh = lease_refresh
        self._poll_linger = poll_linger
        self.fanout = Fanout()
        self._outboxes: set[Outbox] = set()
        self._recent_polls: dict[str, float] = {}
        self.latest: dict[str, Quote] = {}
        self.bus_connected = False
        self.feed_status: FeedStatus = LIVE
        # Which symbols may be subscribed (the feed's check, the provider's recent rejections).
        self.acceptance = acceptance or Acceptance()
        self._resync = asyncio.Event()
        self._reads: dict[str, asyncio.Future[None]] = {}  # snapshot reads in flight
        self._dirty = asyncio.Event()
        self._reported: set[str] = set()
        self.last_report: float | None = None
        # Counters for /metrics (plain ints on the hot path; see app.stats).
        self.received = 0  # quotes from the bus that were new to this process
        self.frames_sent = 0  # WebSocket frames written through the ASGI send
        self.frames_fast = 0  # ... and by connections' writers straight to the socket
        self.slow_closes = 0  # clients closed with 1013
        self.conflated_closed = 0  # conflated updates of outboxes already detached
        self.draining = False
        self.polls_in_flight = 0
        self._empty = asyncio.Event()
        self._empty.set()

    # ---- connections -------------------------------------------------------------------------

    @property
    def connections(self) -> int:
        return len(self._outboxes)

    @property
    def state(self) -> str:
        return self.current_status().state

    def current_status(self) -> FeedStatus:
        """What clients are told: the bus state first, then the fetcher's feed status."""
        if not self.bus_connected:
            return FeedStatus("delayed", "bus_disconnected")
        return self.feed_status

    def attach(self, outbox: Outbox) -> None:
        self._outboxes.add(outbox)
        self._empty.clear()

    def detach(self, outbox: Outbox) -> None:
        self.conflated_closed += outbox.conflated
        outbox.conflated = 0
        self.unwatch(outbox, list(outbox.symbols))
        self._outboxes.discard(outbox)
        if not self._outboxes:
            self._empty.set()

    async def wait_empty(self) -> None:
        """Until no connection or long-poll is attached (used by the drain)."""
        await self._empty.wait()

    def watch(self, outbox: Outbox, symbols: Iterable[str]) -> None:
        symbols = [s for s in symbols if s not in outbox.symbols]
        outbox.symbols.update(symbols)
        self.fanout.regroup(outbox)
        unpriced = [s for s in symbols if s not in self.latest and not self.acceptance.refused(s)]
        if unpriced:
            self.admission.want(outbox.client, unpriced)
        self._dirty.set()

    def unwatch(self, outbox: Outbox, symbols: Sequence[str]) -> None:
        symbols = [s for s in symbols if s in outbox.symbols]
        outbox.symbols.difference_update(symbols)
        self.fanout.regroup(outbox)
        outbox.forget(symbols)
        self.admission.unwant(outbox.client, symbols)
        self._dirty.set()

    def note_poll(self, symbols: Iterable[str]) -> None:
        """A long-poll client asked for `symbols`: keep them watched a while after it returns."""
        until = time.monotonic() + self._poll_linger
        for symbol in symbols:
            if symbol not in self._recent_polls:
                self._dirty.set()
            self._recent_polls[symbol] = until

    @property
    def outboxes(self) -> frozenset[Outbox]:
        return frozenset(self._outboxes)

    def watchers(self) -> dict[str, int]:
        """Subscribers per symbol in this process (WebSocket and in-flight long-polls)."""
        return self.fanout.counts()

    def counts(self) -> dict[str, int]:
        """Subscribers per symbol on this replica, as reported to the registry: a recently
        polled symbol counts at least once, and a symbol nobody has priced yet is left out until
        one of its clients is given room for it (app.core.admission)."""
        counts = self.fanout.counts()
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
        admission.share(len(self.health.peers) + 1)
        admission.refill()
        latest = self.latest
        # A never-priced symbol counts its clients, not their connections: opening more
        # connections buys no place in the fetcher's order.
        return {
            s: n if s in latest else admission.demand(s)
            for s, n in counts.items()
            if s in latest or admission.admitted(s)
        }

    def start_drain(self, spread: float) -> None:
        """Tell every client to reconnect elsewhere, each after its own random delay (up to
        `spread` seconds, so they do not all land on the other replicas at once), then close
        with 1012; wake in-flight long-polls so they return now."""
        self.draining = True
        for outbox in list(self._outboxes):
            delay_ms = int(random.uniform(0.1, max(spread, 0.1)) * 1000)
            outbox.offer_control(outbox.fmt.reconnect(delay_ms))
            outbox.close_after(WS_1012_SERVICE_RESTART, "server restarting")

    # ---- snapshots ---------------------------------------------------------------------------

    async def snapshot(self, symbols: Sequence[str]) -> list[Quote]:
        """The newest quote known for each of `symbols` (this process, else the shared store)."""
        missing = [s for s in symbols if s not in self.latest]
        if missing:
            await self._read_stored(missing)
        return [self.latest[s] for s in symbols if s in self.latest]

    async def await_quotes(
        self,
        symbols: Sequence[str],
        ready: Callable[[list[Quote]], bool],
        seconds: float,
        client: str = "?",
    ) -> tuple[list[Quote], bool]:
        """Watch `symbols` for `client` until `ready(their newest quotes)` holds, the hub drains,
        or `seconds` pass: (the quotes, whether time ran out). Watching is what makes the fetcher
        price a symbol; the watch is in place before the first read, so no update slips
        between."""
        # What the shared store has priced already needs no admission (app.core.admission):
        # read it first, as a WebSocket subscribe does; the read after the watch catches what
        # comes in between.
        await self.snapshot(symbols)
        doorbell = Outbox(_DOORBELL)
        doorbell.client = client
        self.attach(doorbell)
        self.watch(doorbell, symbols)
        try:
            quotes = await self.snapshot(symbols)
            async with asyncio.timeout(seconds):
                while not ready(quotes) and not self.draining:
                    await doorbell.wait()
                    doorbell.drain()
                    quotes = await self.snapshot(symbols)
            return quotes, False
        except TimeoutError:
            reraise_if_cancelling()
            return quotes, True
        finally:
            self.detach(doorbell)

    async def _read_stored(self, symbols: Sequence[str]) -> None:
        # A reconnect storm lands thousands of subscribes for the same few symbols on a replica
        # that has not cached them yet: one store read per symbol in flight, the rest wait for it
        # (else each would take its own Redis connection, past the pool's limit).
        waits = {self._reads[s] for s in symbols if s in self._reads}
        todo = [s for s in symbols if s not in self._reads]
        if todo:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            for symbol in todo:
                self._reads[symbol] = done
            try:
                stored = await self._backend.snapshots.get(todo)
            except BusUnavailable as exc:
                # Every subscribe reads: one line a minute, not one per client, while it fails.
                client_noise.note("snapshot_read", f"snapshot read failed: {exc}")
                stored = {}
            finally:
                for symbol in todo:
                    del self._reads[symbol]
                done.set_result(None)
            # Newer than this process had: the watchers already here get them too (the bus copy
            # of the same quote, if it comes, is then no longer news).
            self._take_stored(stored)
        if waits:
            await asyncio.wait(waits)  # not gather: a cancelled waiter must not cancel the read

    def _take_stored(self, stored: Mapping[str, bytes]) -> None:
        """Deliver the stored quotes that are newer than this process's."""
        quotes = []
        for data in stored.values():
            try:
                quotes.append(decode_quote(data))
            except QuoteDecodeError as exc:
                log.warning("ignoring corrupt stored quote: %s", exc)
        self._deliver(quotes)

    def _deliver(self, quotes: Iterable[Quote]) -> int:
        """Remember and fan out the quotes newer than this process's; returns how many were.
        Duplicates, and quotes older than what this process already has, go no further."""
        fresh = [quote for quote in quotes if self._remember(quote)]
        self.fanout.publish(fresh)
        return len(fresh)

    # ---- background work ---------------------------------------------------------------------

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._keep_listening())
            tg.create_task(self.health.run(self._backend.bus, lambda: self.bus_connected))
            tg.create_task(self._resync_loop())
            tg.create_task(self._report_loop())

    async def withdraw(self) -> None:
        """Clean shutdown: take this replica's subscriptions out of the registry at once."""
        try:
            await self._backend.registry.withdraw(self._replica_id)
        except BusUnavailable as exc:
            log.warning("could not withdraw subscriptions (they expire by lease): %s", exc)

    def _on_bus_state(self, connected: bool) -> None:
        was = self.bus_connected
        self.bus_connected = connected
        if connected:
            self.health.listening()
            self.fetchers.listening()
        if connected and not was:
            self._resync.set()
        if connected != was:
            log.info("bus listener %s", "connected" if connected else "disconnected")
            self._broadcast_status()

    async def _keep_listening(self) -> None:
        """Run the listener; when the heartbeat says it went deaf, replace it with a new one."""
        health = self.health
        while True:
            health.rebuild.clear()
            async with asyncio.TaskGroup() as tg:
                listener = tg.create_task(self._listen())
                rebuild = tg.create_task(health.rebuild.wait())
                cancel_together(listener, rebuild)
            health.rebuilds += 1
            log.warning("rebuilding the bus listener (rebuild %d)", health.rebuilds)

    async def _listen(self) -> None:
        channels = [UPDATES_CHANNEL, CONTROL_CHANNEL]
        try:
            async for message in self._backend.bus.listen(channels, self._on_bus_state):
                if message.channel == UPDATES_CHANNEL:
                    self.dispatch(message.data)
                else:
                    self.health.on_control(message.data)
        finally:
            self._on_bus_state(False)

    def dispatch(self, data: bytes) -> None:
        """Fan one `market-data:updates` message out to the outboxes. Never awaits."""
        try:
            update = parse_update(data)
        except UpdateDecodeError as exc:
            log.warning("ignoring malformed update message: %s", exc)
            return
        if update.refresh is not None:
            self.refresh = update.refresh
        self.fetchers.update_heard()
        self.received += self._deliver(update.quotes)
        for rejection in update.rejected:
            self.acceptance.reject(rejection)
            self._reject(rejection.symbol, rejection.reason, rejection.source)
        status = update.status
        if status is not None and status != self.feed_status:
            self.feed_status = status
            if self.bus_connected:
                self._broadcast_status()

    def _reject(self, symbol: str, reason: str, source: str | None) -> None:
        """The feed cannot price `symbol`: tell its watchers and end their subscriptions to it."""
        self.admission.settled([symbol])
        for outbox in list(self.fanout.watchers(symbol)):
            outbox.offer_control(outbox.fmt.rejected(symbol, reason, source))
            self.unwatch(outbox, [symbol])

    def _remember(self, quote: Quote) -> bool:
        known = self.latest.get(quote.symbol)
        if not is_newer(quote, known):
            return False
        self.latest[quote.symbol] = quote
        if known is None:  # its first price here: it needs no admission any more
            self.admission.settled([quote.symbol])
        return True

    def _broadcast_status(self) -> None:
        status = self.current_status()
        texts: dict[str, str | None] = {}
        for outbox in self._outboxes:
            name = outbox.fmt.name
            if name not in texts:
                texts[name] = outbox.fmt.status(status)
            outbox.offer_control(texts[name])

    async def _resync_loop(self) -> None:
        """After a (re)connect, push snapshots newer than what clients got before the gap."""
        while True:
            await self._resync.wait()
            self._resync.clear()
            symbols = list(self.fanout.counts())
            if not symbols:
                continue
            try:
                stored = await self._backend.snapshots.get(symbols)
            except BusUnavailable as exc:
                log.warning("resync after reconnect failed: %s", exc)
                continue
            self._take_stored(stored)
            self._dirty.set()  # the registry may have lost our lease while we were away

    async def _report_loop(self) -> None:
        while True:
            await wait_event(self._dirty, self._lease_refresh)
            await asyncio.sleep(REPORT_COALESCE)
            self._dirty.clear()
            counts = self.counts()
            try:
                await self._report(counts)
            except BusUnavailable as exc:
                log.warning("subscription report failed, will retry: %s", exc)
                await asyncio.sleep(min(1.0, self._lease_refresh))
                self._dirty.set()

    async def _report(self, counts: Mapping[str, int]) -> None:
        await self._backend.registry.report(self._replica_id, counts)
        added = tuple(sorted(counts.keys() - self._reported))
        removed = tuple(sorted(self._reported - counts.keys()))
        if added or removed:
            change = SubscriptionChange(self._replica_id, added, removed)
            await self._backend.bus.publish(SUBSCRIPTIONS_CHANNEL, change.encode())
        self._reported = set(counts)
        self.last_report = time.monotonic()
