"""The alert store port: alerts by owner and by symbol, the fenced firing, and the inbox.

Two adapters: `app.alerts.redis_store` (shared by every replica) and `app.alerts.memory_store`
(one process). Both keep, per alert, its encoded bytes; a change is applied only if those bytes
are still what the evaluator read (compare-and-set), so an alert removed or changed meanwhile is
left alone, and only while the fetcher term that evaluated it still holds the lease: the same
fence as the quotes' publish (app.pubsub.base.FetcherLease.publish). A firing records the alert's
new state, appends the fired message to the owner's inbox and publishes it on
`market-data:alerts`, all or nothing: so a deposed fetcher cannot fire, and an alert fires once.

Fired messages are bytes: `prefix + str(seq) + suffix`, where `seq` is a cluster-wide counter
the store assigns at firing (the long-poll's cursor, app.alerts.delivery).
Errors surface as app.pubsub.base.BusUnavailable.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from app.alerts.model import Alert

ALERTS_CHANNEL = "market-data:alerts"
# Fired alerts kept per owner until a tab shows them, and for how long at most.
INBOX_MAX = 50
INBOX_TTL = 7 * 86400.0
# Alerts the whole deployment holds at most: anonymous browsers are free to make, so the sum of
# their bounds is no bound; this one keeps the store (and an evaluation) finite.
MAX_ALERTS = 100_000


class Added(enum.Enum):
    ADDED = "added"
    OWNER_FULL = "owner_full"  # the owner has `limit` alerts already
    STORE_FULL = "store_full"  # the deployment holds MAX_ALERTS


@dataclass(frozen=True, slots=True)
class Change:
    """`old` (the stored bytes read) becomes `new`; `fire` is the message (prefix, suffix) when
    this change is a firing, None for a re-arm."""

    old: bytes
    new: Alert
    fire: tuple[bytes, bytes] | None = None


class AlertStore(Protocol):
    async def add(self, alert: Alert, limit: int) -> Added:
        """Store a new alert, unless its owner has `limit` already or the store is full."""
        ...

    async def remove(self, owner: str, alert_id: str) -> bool:
        """Remove `owner`'s alert `alert_id`; False when it has none by that id."""
        ...

    async def owned(self, owner: str) -> list[Alert]:
        """`owner`'s alerts, oldest first."""
        ...

    async def symbols(self) -> set[str]:
        """Every symbol with at least one alert (the evaluator's index)."""
        ...

    async def for_symbols(self, symbols: Sequence[str]) -> list[tuple[Alert, bytes]]:
        """The alerts on `symbols`, each with its stored bytes (for `Change.old`)."""
        ...

    async def apply(self, token: int, changes: Sequence[Change]) -> list[bytes] | None:
        """Apply the `changes` whose alert is still stored as `old`, only if fetcher term
        `token` holds the lease: the fired messages (also in the inboxes and published), or None
        when the term is over (nothing written)."""
        ...

    async def inbox(self, owner: str) -> list[bytes]:
        """Fired messages of `owner` not yet shown in any tab, oldest first."""
        ...

    async def seen(self, owner: str, messages: Sequence[bytes]) -> None:
        """Take `messages` out of `owner`'s inbox: a tab has shown them."""
        ...

    async def shared_secret(self) -> bytes:
        """A random key every replica of this deployment agrees on (created once)."""
        ...
