"""The alert store port: alerts by owner and by symbol, the fenced firing, and the inbox.

Two adapters: `app.alerts.redis_store` (shared by every replica) and `app.alerts.memory_store`
(one process). Both keep, per alert, its encoded bytes; a change is applied only if those bytes
are still what the evaluator read (compare-and-set), so an alert removed or changed meanwhile is
left alone, and only while the fetcher term that evaluated it still holds the lease: the same
fence as the quotes' publish (app.pubsub.base.FetcherLease.publish). A firing records the alert's
new state, appends the fired message to the owner's inbox and publishes it on
`market-data:alerts`, all or nothing: so a deposed fetcher cannot fire, and an alert fires once.

The evaluator reads only the alerts a price reaches: each symbol's alerts are indexed by the
price that changes them (`due_at`), in two sorted sets: `rise` (due when the price is at or
above the score: an armed `above` alert at its level, a fired `below` alert at its re-arm price)
and `fall` (due at or below the score). So an evaluation costs what changes, not what is stored.

Anonymous owners' alerts expire after `ALERT_IDLE_DAYS` without a visit (`touch` records one);
the symbols with alerts are bounded (`ALERT_SYMBOLS_MAX`): they are fetched even when no page
watches them.

Fired messages are bytes: `prefix + str(seq) + suffix`, where `seq` is a cluster-wide counter
the store assigns at firing (the long-poll's cursor, app.alerts.delivery).
Errors surface as app.pubsub.base.BusUnavailable.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from app.alerts.model import Alert, State

ALERTS_CHANNEL = "market-data:alerts"
# Fired alerts kept per owner until a tab shows them, and for how long at most.
INBOX_MAX = 50
INBOX_TTL = 7 * 86400.0
# Alerts the whole deployment holds at most: anonymous browsers are free to make, so the sum of
# their bounds is no bound; this one keeps the store (and an evaluation) finite.
MAX_ALERTS = 100_000
# Owners whose alerts one sweep expires at most (the next sweep takes the rest).
EXPIRE_BATCH = 100


class Added(enum.Enum):
    ADDED = "added"
    OWNER_FULL = "owner_full"  # the owner has `limit` alerts already
    STORE_FULL = "store_full"  # the deployment holds MAX_ALERTS
    SYMBOLS_FULL = "symbols_full"  # a new symbol, and `max_symbols` have alerts already


def due_at(alert: Alert, band_pct: Decimal) -> tuple[bool, Decimal]:
    """Where the index keeps `alert`: (rises, price). `rises`: it changes when the price is at
    or above `price` (else at or below)."""
    if alert.state is State.ARMED:
        return alert.up, alert.level
    return not alert.up, alert.rearms_at(band_pct)


@dataclass(frozen=True, slots=True)
class Change:
    """`old` (the stored bytes read) becomes `new`; `fire` is the message (prefix, suffix) when
    this change is a firing, None for a re-arm. `band` (the re-arm band, %) places a fired
    alert in the index."""

    old: bytes
    new: Alert
    band: Decimal
    fire: tuple[bytes, bytes] | None = None

    def due_at(self) -> tuple[bool, Decimal]:
        return due_at(self.new, self.band)


@dataclass(slots=True)
class Applied:
    """What a fenced `apply` changed: the fired messages and how many alerts it re-armed."""

    fired: list[bytes] = field(default_factory=list)
    rearmed: int = 0


@dataclass(slots=True)
class Due:
    """The alerts the prices reach, each with its stored bytes (for `Change.old`), and the
    symbols that may have more than were read (the evaluator reads them again)."""

    alerts: list[tuple[Alert, bytes]] = field(default_factory=list)
    more: set[str] = field(default_factory=set)


class AlertStore(Protocol):
    async def add(
        self, alert: Alert, limit: int, *, max_symbols: int = 0, now_ms: int = 0
    ) -> Added:
        """Store a new alert, unless its owner has `limit` already, the store is full, or its
        symbol has none yet and `max_symbols` (0: no bound) symbols have some. Counts as a visit
        of its owner (`touch`)."""
        ...

    async def remove(self, owner: str, alert_id: str) -> bool:
        """Remove `owner`'s alert `alert_id`; False when it has none by that id."""
        ...

    async def owned(self, owner: str) -> list[Alert]:
        """`owner`'s alerts, oldest first."""
        ...

    async def symbols(self) -> set[str]:
        """Every symbol with at least one alert (fetched because of it)."""
        ...

    async def for_symbols(self, symbols: Sequence[str]) -> list[tuple[Alert, bytes]]:
        """Every alert on `symbols`, each with its stored bytes (for `Change.old`)."""
        ...

    async def due(self, prices: Mapping[str, Decimal], limit: int) -> Due:
        """For each symbol at its price, the alerts that price changes: armed ones it crosses,
        fired ones it re-arms; at most `limit` per symbol and side of the index."""
        ...

    async def apply(self, token: int, changes: Sequence[Change]) -> Applied | None:
        """Apply the `changes` whose alert is still stored as `old`, only if fetcher term
        `token` holds the lease: the fired messages (also in the inboxes and published), or None
        when the term is over (nothing written)."""
        ...

    async def touch(self, owners: Sequence[str], now_ms: int) -> None:
        """Anonymous `owners` were seen now (their alerts do not expire yet)."""
        ...

    async def expire(self, before_ms: int) -> int:
        """Remove the alerts (and inbox) of anonymous owners not seen since `before_ms`, at
        most EXPIRE_BATCH owners: how many owners were expired."""
        ...

    async def reindex(self, band_pct: Decimal, now_ms: int) -> int:
        """Index alerts stored by an older version (once per deployment): how many."""
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

    async def take(self, address: str) -> float:
        """The per-address rate of stored alerts, shared by replicas: 0 if `address` may store
        one now (counted), else seconds until it may."""
        ...

    async def refund(self, address: str) -> None:
        """Give back what `take` counted: only stored alerts count."""
        ...
