"""Is this replica's bus listener still hearing? Heartbeats on `market-data:control`.

A listener can go deaf without an error (a killed subscriber connection that looks open). Every
replica publishes its own heartbeat each `interval`; when ours has not come back for 3.5 intervals
while the bus is connected, the listener is declared deaf and `rebuild` is set (the hub replaces
the listener, and readiness fails meanwhile). Heartbeats of other replicas keep `peers` (what
`/ready` shows), and one with our replica id but another process's nonce is a misconfiguration
that `twins` reports (app.identity). While this process fetches, its heartbeat also says how its
fetch loop is doing (`announce`); every replica hands what it hears of that to `on_fetcher`
(app.core.fetcher_watch).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

import orjson

from app.identity import TwinWatch
from app.pubsub.base import CONTROL_CHANNEL, Bus, BusUnavailable

log = logging.getLogger(__name__)


Announce = Callable[[], Mapping[str, object] | None]


class ListenerHealth:
    def __init__(
        self,
        replica_id: str,
        nonce: str | None,
        interval: float = 1.0,
        *,
        announce: Announce | None = None,
        on_fetcher: Callable[[object], None] | None = None,
    ) -> None:
        self.replica_id = replica_id
        self._announce = announce
        self._on_fetcher = on_fetcher
        self.twins = TwinWatch(replica_id, nonce)  # tells our heartbeat from a twin's
        self.interval = interval
        self.deaf_after = 3.5 * interval  # deaf when our own heartbeat is gone this long
        self.last_heartbeat: float | None = None  # monotonic time we last heard ourselves
        self.listening_since: float | None = None  # when the current listener subscribed
        self.peers: dict[str, float] = {}  # replica id -> monotonic time last heard
        self.rebuilds = 0
        self.rebuild = asyncio.Event()

    @property
    def hearing_itself(self) -> bool:
        """Not deaf: our own heartbeat came back recently, or the listener (re)subscribed too
        recently to expect one yet."""
        heard = self._last_heard()
        return heard is not None and time.monotonic() - heard < self.deaf_after

    def _last_heard(self) -> float | None:
        """The later of our last echo and the listener's (re)connect, if any."""
        heard = [t for t in (self.last_heartbeat, self.listening_since) if t is not None]
        return max(heard) if heard else None

    def listening(self) -> None:
        """The listener (re)subscribed: silence counts from now."""
        self.listening_since = time.monotonic()

    def on_control(self, data: bytes) -> None:
        try:
            event = orjson.loads(data)
            kind, replica = event["type"], event["replica"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("ignoring malformed control message")
            return
        if kind != "heartbeat" or not isinstance(replica, str):
            return
        if "fetcher" in event and self._on_fetcher is not None:
            self._on_fetcher(event["fetcher"])  # ours too: the same truth for every replica
        now = time.monotonic()
        if replica == self.replica_id:
            if self.twins.is_own(event):
                self.last_heartbeat = now
            return
        self.peers[replica] = now
        # Forget replicas silent for a while (restarted ones come back under new ids).
        for peer, seen in list(self.peers.items()):
            if now - seen > 10 * self.interval:
                del self.peers[peer]

    async def run(self, bus: Bus, connected: Callable[[], bool]) -> None:
        """Publish our heartbeat every interval; set `rebuild` when it stops coming back."""
        plain = self.twins.heartbeat()
        while True:
            fetching = self._announce() if self._announce is not None else None
            beat = plain if fetching is None else self.twins.heartbeat(fetching)
            sent_at = time.monotonic()
            try:
                await bus.publish(CONTROL_CHANNEL, beat)
            except BusUnavailable:
                pass  # the listener sees the outage itself
            else:
                # Silence counts from the later of our last echo and the listener's (re)connect,
                # so an outage is not mistaken for deafness, and a rebuilt listener that is
                # still deaf is rebuilt again.
                heard = self._last_heard()
                silent_since = sent_at if heard is None else heard
                if connected() and sent_at - silent_since > self.deaf_after:
                    log.error("bus listener is deaf: our heartbeat has not come back")
                    self.listening_since = None
                    self.rebuild.set()
            await asyncio.sleep(self.interval)
