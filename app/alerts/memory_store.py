"""In-process alert store: the whole cluster is this one process (see app.alerts.store).

Inboxes keep no TTL here: the process's life bounds them (and INBOX_MAX each)."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Sequence

from app.alerts.model import Alert, decode_alert
from app.alerts.store import ALERTS_CHANNEL, INBOX_MAX, MAX_ALERTS, Added, Change
from app.pubsub.base import Bus, FetcherLease


class MemoryAlertStore:
    def __init__(self, lease: FetcherLease, bus: Bus, *, max_alerts: int = MAX_ALERTS) -> None:
        self._max_alerts = max_alerts
        self._lease = lease
        self._bus = bus
        self._alerts: dict[str, bytes] = {}  # id -> encoded, in insertion order
        self._owners: dict[str, list[str]] = {}
        self._by_symbol: dict[str, set[str]] = {}
        self._inboxes: dict[str, deque[bytes]] = {}
        self._seq = 0
        self._secret = os.urandom(32)

    async def add(self, alert: Alert, limit: int) -> Added:
        if len(self._owners.get(alert.owner, ())) >= limit:
            return Added.OWNER_FULL
        if len(self._alerts) >= self._max_alerts:
            return Added.STORE_FULL
        self._owners.setdefault(alert.owner, []).append(alert.id)
        self._alerts[alert.id] = alert.encode()
        self._by_symbol.setdefault(alert.symbol, set()).add(alert.id)
        return Added.ADDED

    async def remove(self, owner: str, alert_id: str) -> bool:
        ids = self._owners.get(owner, [])
        if alert_id not in ids:
            return False
        ids.remove(alert_id)
        if not ids:
            del self._owners[owner]
        for symbol, members in list(self._by_symbol.items()):
            members.discard(alert_id)
            if not members:
                del self._by_symbol[symbol]
        self._alerts.pop(alert_id, None)
        return True

    async def owned(self, owner: str) -> list[Alert]:
        alerts = [decode_alert(self._alerts[i]) for i in self._owners.get(owner, [])]
        return sorted(alerts, key=lambda a: (a.created_at, a.id))

    async def symbols(self) -> set[str]:
        return set(self._by_symbol)

    async def for_symbols(self, symbols: Sequence[str]) -> list[tuple[Alert, bytes]]:
        ids = [i for s in symbols for i in sorted(self._by_symbol.get(s, ()))]
        return [(decode_alert(self._alerts[i]), self._alerts[i]) for i in ids]

    async def apply(self, token: int, changes: Sequence[Change]) -> list[bytes] | None:
        holder = await self._lease.peek()
        if holder is None or holder.token != token:
            return None
        fired: list[bytes] = []
        for change in changes:
            if self._alerts.get(change.new.id) != change.old:
                continue
            self._alerts[change.new.id] = change.new.encode()
            if change.fire is not None:
                self._seq += 1
                message = change.fire[0] + str(self._seq).encode() + change.fire[1]
                inbox = self._inboxes.setdefault(change.new.owner, deque(maxlen=INBOX_MAX))
                inbox.append(message)
                fired.append(message)
        for message in fired:
            await self._bus.publish(ALERTS_CHANNEL, message)
        return fired

    async def inbox(self, owner: str) -> list[bytes]:
        return list(self._inboxes.get(owner, ()))

    async def seen(self, owner: str, messages: Sequence[bytes]) -> None:
        inbox = self._inboxes.get(owner)
        for message in messages:
            if inbox is not None and message in inbox:
                inbox.remove(message)

    async def shared_secret(self) -> bytes:
        return self._secret
