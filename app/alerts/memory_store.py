"""In-process alert store: the whole cluster is this one process (see app.alerts.store).

The index is two lists per symbol kept sorted with bisect, `(price, id)`: the same semantics as
Redis's sorted sets. Inboxes keep no TTL here: the process's life bounds them (and INBOX_MAX
each). The per-address rate is this process's (app.login.LoginThrottle): one process is the
whole cluster."""

from __future__ import annotations

import bisect
import os
import time
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from decimal import Decimal

from app.alerts.model import Alert, decode_alert
from app.alerts.store import (
    ALERTS_CHANNEL,
    EXPIRE_BATCH,
    INBOX_MAX,
    MAX_ALERTS,
    Added,
    Applied,
    Change,
    Due,
    due_at,
)
from app.pubsub.base import Bus, FetcherLease

_Index = list[tuple[Decimal, str]]
MAX_ADDRESSES = 10_000  # client addresses whose rate is remembered


class MemoryAlertStore:
    def __init__(
        self,
        lease: FetcherLease,
        bus: Bus,
        *,
        max_alerts: int = MAX_ALERTS,
        rate: tuple[float, float] = (10, 20),
    ) -> None:
        self._max_alerts = max_alerts
        self._lease = lease
        self._bus = bus
        self._alerts: dict[str, bytes] = {}  # id -> encoded, in insertion order
        self._owners: dict[str, list[str]] = {}
        # symbol -> (rise, fall): (price, id) sorted; an alert's place is in `_placed`.
        self._index: dict[str, tuple[_Index, _Index]] = {}
        self._placed: dict[str, tuple[str, bool, Decimal]] = {}  # id -> symbol, rises, price
        self._seen: dict[str, int] = {}  # anonymous owner -> ms, last seen
        self._inboxes: dict[str, deque[bytes]] = {}
        self._seq = 0
        self._secret = os.urandom(32)
        self._rate, self._burst = rate[0] / 60, rate[1]
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, stamp

    async def add(
        self, alert: Alert, limit: int, *, max_symbols: int = 0, now_ms: int = 0
    ) -> Added:
        if len(self._owners.get(alert.owner, ())) >= limit:
            return Added.OWNER_FULL
        if len(self._alerts) >= self._max_alerts:
            return Added.STORE_FULL
        if max_symbols and alert.symbol not in self._index and len(self._index) >= max_symbols:
            return Added.SYMBOLS_FULL
        self._owners.setdefault(alert.owner, []).append(alert.id)
        self._alerts[alert.id] = alert.encode()
        self._place(alert.id, alert.symbol, *due_at(alert, Decimal(0)))
        await self.touch([alert.owner], now_ms)
        return Added.ADDED

    def _place(self, alert_id: str, symbol: str, rises: bool, price: Decimal) -> None:
        self._unplace(alert_id)
        sides = self._index.setdefault(symbol, ([], []))
        bisect.insort(sides[0 if rises else 1], (price, alert_id))
        self._placed[alert_id] = (symbol, rises, price)

    def _unplace(self, alert_id: str) -> None:
        placed = self._placed.pop(alert_id, None)
        if placed is None:
            return
        symbol, rises, price = placed
        sides = self._index[symbol]
        side = sides[0 if rises else 1]
        at = bisect.bisect_left(side, (price, alert_id))
        if at < len(side) and side[at] == (price, alert_id):
            del side[at]
        if not sides[0] and not sides[1]:
            del self._index[symbol]

    async def remove(self, owner: str, alert_id: str) -> bool:
        ids = self._owners.get(owner, [])
        if alert_id not in ids:
            return False
        ids.remove(alert_id)
        if not ids:
            del self._owners[owner]
            self._seen.pop(owner, None)
        self._unplace(alert_id)
        self._alerts.pop(alert_id, None)
        return True

    async def owned(self, owner: str) -> list[Alert]:
        return [decode_alert(self._alerts[i]) for i in self._owners.get(owner, ())]

    async def symbols(self) -> set[str]:
        return set(self._index)

    async def for_symbols(self, symbols: Sequence[str]) -> list[tuple[Alert, bytes]]:
        wanted = set(symbols)
        return [
            (decode_alert(data), data)
            for alert_id, data in self._alerts.items()
            if self._placed[alert_id][0] in wanted
        ]

    async def due(self, prices: Mapping[str, Decimal], limit: int) -> Due:
        found = Due()
        for symbol, price in prices.items():
            rise, fall = self._index.get(symbol, ([], []))
            # rise: due when price >= its price (a prefix); fall: when price <= it (a suffix).
            end = bisect.bisect_right(rise, (price, "\U0010ffff"))
            ids = [i for _, i in rise[: min(end, limit)]]
            start = bisect.bisect_left(fall, (price, ""))
            ids += [i for _, i in fall[start : start + limit]]
            if min(end, limit) == limit or len(fall) - start >= limit:
                found.more.add(symbol)
            found.alerts += [(decode_alert(self._alerts[i]), self._alerts[i]) for i in ids]
        return found

    async def apply(self, token: int, changes: Sequence[Change]) -> Applied | None:
        holder = await self._lease.peek()
        if holder is None or holder.token != token:
            return None
        done = Applied()
        for change in changes:
            if self._alerts.get(change.new.id) != change.old:
                continue
            self._alerts[change.new.id] = change.new.encode()
            self._place(change.new.id, change.new.symbol, *change.due_at())
            if change.fire is None:
                done.rearmed += 1
                continue
            self._seq += 1
            message = change.fire[0] + str(self._seq).encode() + change.fire[1]
            inbox = self._inboxes.setdefault(change.new.owner, deque(maxlen=INBOX_MAX))
            inbox.append(message)
            done.fired.append(message)
        for message in done.fired:
            await self._bus.publish(ALERTS_CHANNEL, message)
        return done

    async def touch(self, owners: Sequence[str], now_ms: int) -> None:
        for owner in owners:
            if owner.startswith("anon:") and owner in self._owners:
                self._seen[owner] = max(now_ms, self._seen.get(owner, 0))

    async def expire(self, before_ms: int) -> int:
        idle = [o for o, at in self._seen.items() if at < before_ms][:EXPIRE_BATCH]
        for owner in idle:
            del self._seen[owner]
            for alert_id in list(self._owners.get(owner, ())):
                await self.remove(owner, alert_id)
            self._inboxes.pop(owner, None)
        return len(idle)

    async def reindex(self, band_pct: Decimal, now_ms: int) -> int:
        return 0  # this process wrote every alert it has: all indexed

    async def inbox(self, owner: str) -> list[bytes]:
        return list(self._inboxes.get(owner, ()))

    async def seen(self, owner: str, messages: Sequence[bytes]) -> None:
        inbox = self._inboxes.get(owner)
        for message in messages:
            if inbox is not None and message in inbox:
                inbox.remove(message)

    async def shared_secret(self) -> bytes:
        return self._secret

    async def take(self, address: str) -> float:
        now = time.monotonic()
        tokens, stamp = self._buckets.pop(address, (self._burst, now))
        tokens = min(self._burst, tokens + (now - stamp) * self._rate)
        wait = 0.0 if tokens >= 1 else (1 - tokens) / self._rate
        self._buckets[address] = (tokens - 1 if tokens >= 1 else tokens, now)
        while len(self._buckets) > MAX_ADDRESSES:
            self._buckets.popitem(last=False)
        return wait

    async def refund(self, address: str) -> None:
        entry = self._buckets.get(address)
        if entry is not None:
            self._buckets[address] = (min(self._burst, entry[0] + 1), entry[1])
