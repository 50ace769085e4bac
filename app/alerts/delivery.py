"""Delivery of fired alerts to every open tab of their owner, on every replica.

Each replica listens on `market-data:alerts` (where the store's fenced firing publishes) and
hands each fired alert to its owner's connections here: WebSocket outboxes as the wire
protocol's `alert` message (JSON) or an `alert-fired` element (HTML, turned into a toast by
static/js/alerts.js), and long-polls waiting for that owner are woken. A message some tab got is
taken out of the owner's inbox (app.alerts.store); one that found no tab anywhere stays there and
is shown by the next tab that opens (`welcome`, or a long-poll's first answer).

The listener also hears `market-data:control`, where every replica (this one included) sends a
heartbeat each second: a listener that hears nothing for `DEAF_AFTER` seconds while it believes
itself connected (a subscriber connection killed without an error) is rebuilt, and the inboxes of
the owners connected here are read again, since pub/sub lost what fired meanwhile.

Long-poll cursor: the fired messages' sequence numbers (cluster-wide, assigned at firing). A
poll returns the owner's fired messages numbered above its cursor from what this replica heard
lately (`RECENT_SECONDS`): no Redis read per poll. The inbox is read for a page's first poll (no
cursor), and for every poll while the listener may have missed something (down, or within
`RECENT_SECONDS` of a (re)connect).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from markupsafe import escape

from app.alerts.store import ALERTS_CHANNEL, AlertStore
from app.core.outbox import Outbox
from app.pubsub.base import CONTROL_CHANNEL, Bus, BusUnavailable
from app.supervise import cancel_together, reraise_if_cancelling

log = logging.getLogger(__name__)

RECENT_SECONDS = 120.0
RECENT_PER_OWNER = 20
MAX_OWNERS_REMEMBERED = 10_000
# Heartbeats come every second from every replica: this long without one, the listener is deaf.
DEAF_AFTER = 5.0
# A new connection waits this long at most for its owner's inbox (it stays there otherwise).
INBOX_TIMEOUT = 1.0
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Fired:
    """One fired alert as it goes out: the stored message and its two renderings."""

    raw: bytes
    owner: str
    seq: int
    json: bytes
    html: bytes
    heard: float = 0.0

    def payload(self, fmt_name: str) -> bytes:
        return self.json if fmt_name == "json" else self.html


def parse_fired(raw: bytes, heard: float = 0.0) -> Fired:
    """A fired message (app.alerts.evaluator) -> what tabs get. Raises ValueError if malformed."""
    try:
        message: dict[str, Any] = orjson.loads(raw)
        owner = str(message.pop("owner"))
        seq = int(message["seq"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"malformed fired alert: {exc!r}") from None
    return Fired(raw, owner, seq, orjson.dumps(message), render_html(message), heard)


def render_html(m: dict[str, Any]) -> bytes:
    """The `html` wire format's alert: an element the page's script turns into a toast."""
    text = f"{m.get('symbol')} {m.get('condition')}: now {m.get('price')} {m.get('currency')}"
    attrs = {
        "seq": m.get("seq"), "id": m.get("id"), "symbol": m.get("symbol"),
        "condition": m.get("condition"), "price": m.get("price"),
        "currency": m.get("currency"), "source": m.get("source"), "note": m.get("note"),
        "fired-at": m.get("fired_at"), "published-at": m.get("published_at"),
    }  # fmt: skip
    data = "".join(f' data-{k}="{escape("" if v is None else str(v))}"' for k, v in attrs.items())
    return f'<div class="alert-fired" hidden{data}>{escape(text)}</div>'.encode()


class AlertDelivery:
    def __init__(self, store: AlertStore, bus: Bus) -> None:
        self._store = store
        self._bus = bus
        self._outboxes: dict[str, set[Outbox]] = {}
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._recent: OrderedDict[str, deque[Fired]] = OrderedDict()
        self._resync = asyncio.Event()
        self.connected = False
        self.rebuilds = 0  # deaf listeners replaced
        self.resyncs = 0  # inbox re-reads after a (re)connect
        self._resynced_at: float | None = None  # monotonic time of the last one
        self._heard = 0.0  # monotonic time of the last message on either channel
        self.delivered = 0  # alert messages handed to a tab (a connection or a long-poll)

    # ---- connections and polls ---------------------------------------------------------------

    async def welcome(self, owner: str, outbox: Outbox) -> None:
        """A new connection of `owner`: attach it, then show what fired while no tab was open."""
        self._outboxes.setdefault(owner, set()).add(outbox)
        try:
            await self._show_inbox(owner, outbox)
        except BaseException:  # cancelled (the connection ended): its caller cannot detach it
            self.detach(owner, outbox)
            raise

    async def _show_inbox(self, owner: str, outbox: Outbox) -> None:
        try:
            async with asyncio.timeout(INBOX_TIMEOUT):
                raws = await self._store.inbox(owner)
            pending = [parse_fired(raw) for raw in raws]
        except (BusUnavailable, ValueError, TimeoutError) as exc:
            reraise_if_cancelling()
            log.warning("could not read the alert inbox (shown next time): %r", exc)
            return
        for fired in pending:
            outbox.offer_control(fired.payload(outbox.fmt.name))
        self.delivered += len(pending)
        await self._seen(owner, [f.raw for f in pending])

    def detach(self, owner: str, outbox: Outbox) -> None:
        outboxes = self._outboxes.get(owner)
        if outboxes is not None:
            outboxes.discard(outbox)
            if not outboxes:
                del self._outboxes[owner]

    async def for_poll(self, owner: str, cursor: int | None) -> list[Fired]:
        """What a long-poll of `owner` should show: with no cursor (a page's first poll), the
        inbox; else everything numbered above `cursor`, from what this replica heard lately,
        and from the inbox too only while that may have missed some (`RECENT_SECONDS` after the
        listener (re)connected, or while it is down). Marked seen."""
        stored: list[Fired] = []
        if cursor is None or self._may_have_missed():
            try:
                stored = [parse_fired(raw) for raw in await self._store.inbox(owner)]
            except (BusUnavailable, ValueError) as exc:
                log.warning("could not read the alert inbox: %s", exc)
        found = {f.seq: f for f in stored}
        if cursor is not None:
            found.update((f.seq, f) for f in self._recent.get(owner, ()))
            found = {seq: f for seq, f in found.items() if seq > cursor}
        shown = [found[seq] for seq in sorted(found)]
        self.delivered += len(shown)
        await self._seen(owner, [f.raw for f in shown])
        return shown

    def _may_have_missed(self) -> bool:
        resynced = self._resynced_at
        return (
            not self.connected or resynced is None or time.monotonic() - resynced < RECENT_SECONDS
        )

    def latest_seq(self, owner: str) -> int:
        recent = self._recent.get(owner)
        return recent[-1].seq if recent else 0

    def watch(self, owner: str) -> asyncio.Event:
        """An event set when an alert for `owner` arrives here: registered before a poll first
        looks, so one that fires in between is not missed for a whole poll (`unwatch` after)."""
        event = asyncio.Event()
        self._waiters.setdefault(owner, set()).add(event)
        return event

    def unwatch(self, owner: str, event: asyncio.Event) -> None:
        waiters = self._waiters.get(owner)
        if waiters is not None:
            waiters.discard(event)
            if not waiters:
                del self._waiters[owner]

    async def race(
        self, owner: str | None, work: Awaitable[T], event: asyncio.Event | None = None
    ) -> T | None:
        """Run `work` until it ends, or until an alert for `owner` arrives (then None). With
        `event` (from `watch`), that is the alert's signal, and stays registered."""
        task = asyncio.ensure_future(work)
        if owner is None:
            return await task
        mine = event is None
        if event is None:
            event = self.watch(owner)
        woken = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait([task, woken], return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            if mine:
                self.unwatch(owner, event)
            if not task.done():
                task.cancel()
                await asyncio.wait([task])
        return None if task.cancelled() else task.result()

    # ---- the listener ------------------------------------------------------------------------

    async def run(self, deaf_after: float = DEAF_AFTER) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._resync_loop())
            while True:
                async with asyncio.TaskGroup() as inner:
                    listener = inner.create_task(self._listen())
                    watch = inner.create_task(self._watch(deaf_after))
                    cancel_together(listener, watch)
                self.rebuilds += 1
                self._on_state(False)
                log.warning("alert listener deaf for %gs: rebuilding it", deaf_after)

    async def _listen(self) -> None:
        self._heard = time.monotonic()
        async for message in self._bus.listen([ALERTS_CHANNEL, CONTROL_CHANNEL], self._on_state):
            self._heard = time.monotonic()
            if message.channel != ALERTS_CHANNEL:
                continue
            try:
                fired = parse_fired(message.data, self._heard)
            except ValueError as exc:
                log.warning("ignoring a %s", exc)
                continue
            if self.dispatch(fired):
                await self._seen(fired.owner, [fired.raw])

    async def _watch(self, deaf_after: float) -> None:
        """Ends when the listener, connected, has heard nothing for `deaf_after` seconds."""
        while True:
            await asyncio.sleep(deaf_after / 5)
            if self.connected and time.monotonic() - self._heard > deaf_after:
                return

    def dispatch(self, fired: Fired) -> bool:
        """Hand `fired` to its owner's tabs here; whether any took it."""
        self._remember(fired)
        outboxes = self._outboxes.get(fired.owner, ())
        for outbox in outboxes:
            outbox.offer_control(fired.payload(outbox.fmt.name))
        waiters = self._waiters.get(fired.owner, ())
        for event in waiters:
            event.set()
        self.delivered += len(outboxes)
        return bool(outboxes) or bool(waiters)

    def _remember(self, fired: Fired) -> None:
        now = fired.heard
        recent = self._recent.pop(fired.owner, None) or deque(maxlen=RECENT_PER_OWNER)
        recent.append(fired)
        self._recent[fired.owner] = recent
        while self._recent:
            owner, oldest = next(iter(self._recent.items()))
            fresh = oldest[-1].heard > now - RECENT_SECONDS
            if fresh and len(self._recent) <= MAX_OWNERS_REMEMBERED:
                break
            del self._recent[owner]

    def _on_state(self, connected: bool) -> None:
        if connected:
            self._heard = time.monotonic()  # a (re)connect counts as hearing it
        if connected and not self.connected:
            self._resync.set()
        self.connected = connected

    async def _resync_loop(self) -> None:
        """After a (re)connect: pub/sub lost what fired meanwhile; the inboxes kept it."""
        while True:
            await self._resync.wait()
            self._resync.clear()
            for owner in list(self._outboxes):
                try:
                    pending = [parse_fired(raw) for raw in await self._store.inbox(owner)]
                except (BusUnavailable, ValueError) as exc:
                    log.warning("alert resync failed: %s", exc)
                    break
                taken = [f for f in pending if self.dispatch(f)]
                await self._seen(owner, [f.raw for f in taken])
            self.resyncs += 1
            self._resynced_at = time.monotonic()

    async def _seen(self, owner: str, raws: Iterable[bytes]) -> None:
        raws = list(raws)
        if not raws:
            return
        try:
            await self._store.seen(owner, raws)
        except BusUnavailable as exc:
            log.warning("could not mark alerts seen (they may show again): %s", exc)
