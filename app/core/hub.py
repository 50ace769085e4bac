"""The hub: this process's live core, from the bus listener to the outboxes and waiters.

One listener per process reads `market-data:updates`, decodes each message once
(`app.models.parse_update`), keeps the quotes newer than any it has seen (app.core.latest, so no
client ever gets an older price after a newer one) and hands them to the fan-out
(app.core.fanout), which builds each frame once per group of clients watching the same symbols
and writes it without awaiting anyone; waits for those symbols (app.core.waiters) are woken.

Who watches what is app.core.subscriptions (which also reports it to the registry); which symbols
may be watched is app.core.acceptance.

When the bus connection drops, clients are told the data is delayed; when it comes back, every
watched symbol's snapshot is re-read and newer ones are pushed, since pub/sub lost what was
published meanwhile. A listener can also go deaf without an error (a killed subscriber connection
that looks open): app.core.heartbeat notices when our own heartbeat stops coming back, and the
hub then rebuilds the listener (readiness fails meanwhile).

Update messages may also carry the fetcher's feed `status` (forwarded to every client when it
changes), `rejected` symbols (told to their watchers, whose subscription to them then ends) and
the `confirmed` ones (still current: app.core.freshness tells clients in conflated notes).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence

from app.core.acceptance import Acceptance
from app.core.admission import Admission
from app.core.fanout import Fanout
from app.core.fetcher_watch import FetcherWatch
from app.core.freshness import Freshness
from app.core.heartbeat import Announce, ListenerHealth
from app.core.latest import LatestQuotes
from app.core.outbox import Outbox
from app.core.subscriptions import Subscriptions
from app.models import LIVE, FeedStatus, Quote, UpdateDecodeError, parse_update
from app.pubsub.base import CONTROL_CHANNEL, UPDATES_CHANNEL, Backend
from app.supervise import cancel_together, reraise_if_cancelling

log = logging.getLogger(__name__)


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
        # Which symbols may be subscribed (the feed's check, the provider's recent rejections).
        self.acceptance = acceptance or Acceptance()
        # Which never-priced symbols this replica may report (so the fetcher prices them).
        self.admission = admission or Admission(1, 1, enabled=False)
        # Its first price here: a symbol needs no admission any more.
        self.latest = LatestQuotes(
            backend.snapshots, self._deliver, lambda s: self.admission.settled([s])
        )
        self.subscriptions = Subscriptions(
            replica_id, self.latest, lease_refresh=lease_refresh, poll_linger=poll_linger,
            admission=self.admission, acceptance=self.acceptance,
            replicas=lambda: len(self.health.peers) + 1,
        )  # fmt: skip
        self.fanout: Fanout = self.subscriptions.fanout
        # The fetcher's effective per-symbol refresh interval, as its last message said.
        self.refresh: float | None = None
        # When each price was last confirmed current, told to clients in conflated notes.
        self.freshness = Freshness(self.fetchers.interval)
        self._told: FeedStatus | None = None  # the status last broadcast
        self._outboxes: set[Outbox] = set()
        self.bus_connected = False
        self.feed_status: FeedStatus = LIVE
        self._resync = asyncio.Event()
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
        """Open WebSocket connections (waits are not connections)."""
        return len(self._outboxes)

    @property
    def outboxes(self) -> frozenset[Outbox]:
        return frozenset(self._outboxes)

    def current_status(self) -> FeedStatus:
        """What clients are told: the bus state first (gone, or deaf: our heartbeat does not
        come back), then the fetcher's feed status."""
        if not self.bus_connected:
            return FeedStatus("delayed", "bus_disconnected")
        if not self.health.hearing_itself:
            return FeedStatus("delayed", "bus_unresponsive")
        return self.feed_status

    def attach(self, outbox: Outbox) -> None:
        self._outboxes.add(outbox)
        self._empty.clear()

    def detach(self, outbox: Outbox) -> None:
        self.conflated_closed += outbox.conflated
        outbox.conflated = 0
        self.subscriptions.unwatch(outbox, list(outbox.symbols))
        self._outboxes.discard(outbox)
        self._check_empty()

    def _check_empty(self) -> None:
        if not self._outboxes and not len(self.subscriptions.waiters):
            self._empty.set()

    async def wait_empty(self) -> None:
        """Until no connection or wait is left (used by the drain)."""
        await self._empty.wait()

    def start_drain(self, spread: float) -> None:
        """Tell every client to reconnect elsewhere, each after its own random delay (up to
        `spread` seconds, so they do not all land on the other replicas at once), then close
        with 1012; wake every wait so it returns now."""
        self.draining = True
        for outbox in list(self._outboxes):
            outbox.send_away(int(random.uniform(0.1, max(spread, 0.1)) * 1000))
        self.subscriptions.waiters.ring_all()

    # ---- snapshots and waits -----------------------------------------------------------------

    async def snapshot(self, symbols: Sequence[str]) -> list[Quote]:
        """The newest quote known for each of `symbols` (this process, else the shared store)."""
        return await self.latest.read(symbols)

    def offer_snapshot(self, outbox: Outbox, symbols: Sequence[str]) -> int:
        """Queue to `outbox` a snapshot of the newest quotes held of `symbols` (read them first
        with `snapshot`); returns its size."""
        latest, fmt = self.latest, outbox.fmt
        quotes = [q for s in symbols if (q := latest.get(s)) is not None]
        return outbox.offer_snapshot({q.symbol: latest.encoded(fmt, q) for q in quotes})

    async def await_quotes(
        self,
        symbols: Sequence[str],
        ready: Callable[[list[Quote]], bool],
        seconds: float,
        client: str = "?",
    ) -> tuple[list[Quote], bool]:
        """Wait on `symbols` for `client` until `ready(their newest quotes)` holds, the hub
        drains, or `seconds` pass: (the quotes, whether time ran out). The wait counts as a
        subscription (so the fetcher prices them), registered before this read so no update
        slips between; callers read the store first, as a subscribe does (app.core.admission)."""
        waiter = self.subscriptions.wait_for(symbols, client)
        self._empty.clear()
        try:
            quotes = await self.snapshot(symbols)
            async with asyncio.timeout(seconds):
                while not ready(quotes) and not self.draining:
                    await waiter.wait()
                    quotes = await self.snapshot(symbols)
            return quotes, False
        except TimeoutError:
            reraise_if_cancelling()
            return quotes, True
        finally:
            self.subscriptions.end_wait(waiter)
            self._check_empty()

    def _deliver(self, quotes: Iterable[Quote], soon: bool = False) -> int:
        """Remember and fan out (`soon`: with the rest of this loop turn's bus messages) the
        quotes newer than this process's; returns how many were."""
        fresh = [quote for quote in quotes if self.latest.remember(quote)]
        self.freshness.heard(fresh, (), 0)  # a stored quote is as fresh as its publication
        if fresh:
            (self.fanout.publish_soon if soon else self.fanout.publish)(fresh)
            self.subscriptions.waiters.ring(quote.symbol for quote in fresh)
        return len(fresh)

    async def run(self) -> None:
        backend = self._backend
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._keep_listening())
            tg.create_task(self.health.run(backend.bus, lambda: self.bus_connected))
            tg.create_task(self._resync_loop())
            tg.create_task(self.subscriptions.report_loop(backend.bus, backend.registry))
            tg.create_task(self._watch())

    async def withdraw(self) -> None:
        """Clean shutdown: take this replica's subscriptions out of the registry at once."""
        await self.subscriptions.withdraw(self._backend.registry)

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
        self.freshness.heard((), update.confirmed, update.confirmed_at)
        self.subscriptions.waiters.ring(update.confirmed)  # long-polls waiting for a note
        self.received += self._deliver(update.quotes, soon=True)
        for rejection in update.rejected:
            self.acceptance.reject(rejection)
            symbol, reason, source = rejection.symbol, rejection.reason, rejection.source
            for outbox in self.subscriptions.reject(symbol):
                outbox.offer_control(outbox.fmt.rejected(symbol, reason, source))
        status = update.status
        if status is not None and status != self.feed_status:
            self.feed_status = status
            if self.bus_connected:
                self._broadcast_status()

    async def _watch(self, every: float = 0.25) -> None:
        """Changes no message tells of (the listener going deaf, or hearing again), and the
        freshness notes of the newest confirmations."""
        while True:
            if self.current_status() != self._told:
                self._broadcast_status()
            now = int(time.time() * 1000)
            self.freshness.note(self.fanout, self.refresh, now, self.latest.published_at)
            await asyncio.sleep(every)

    def _broadcast_status(self) -> None:
        self._told = status = self.current_status()
        texts: dict[str, bytes | None] = {}
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
            symbols = list(self.subscriptions.local_counts())
            if symbols and await self.latest.reread(symbols):
                self.subscriptions.changed()  # the registry may have lost our lease while away
