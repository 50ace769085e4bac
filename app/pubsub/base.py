"""Ports to the shared state every replica sees: the bus, last-quote snapshots, subscriptions,
the fetcher lease, the providers' quota counts and the chart's recent prices.

All of them speak bytes or plain str/int/float, never pickles. Two adapters implement them: `memory`
(one process, first-class, used by `make run` and the unit tests) and `redis` (many replicas).
The same contract tests run against both. Errors from the backend surface as `BusUnavailable`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from app.feeds.ledger import QuotaLedger

# Names kept from the original design so its runbook commands still work.
UPDATES_CHANNEL = "market-data:updates"
SUBSCRIPTIONS_CHANNEL = "market-data:subscriptions"
CONTROL_CHANNEL = "market-data:control"


class BusUnavailable(Exception):
    """The backend cannot be reached now; the caller may retry later."""


@dataclass(frozen=True, slots=True)
class Message:
    channel: str
    data: bytes


StateCallback = Callable[[bool], None]


class Bus(Protocol):
    """At-most-once publish/subscribe of byte messages on named channels."""

    async def publish(self, channel: str, data: bytes) -> None:
        """Deliver `data` to every listener of `channel` now listening. Raises BusUnavailable."""
        ...

    def listen(
        self, channels: Sequence[str], on_state: StateCallback | None = None
    ) -> AsyncGenerator[Message, None]:
        """Yield messages from `channels`, in publish order, until the iterator is closed.

        Never ends on its own: when the backend drops, it calls `on_state(False)`, reconnects with
        capped backoff and resubscribes, then calls `on_state(True)`. Messages published while it
        was disconnected are lost (at-most-once): callers re-read snapshots on `on_state(True)`.
        `on_state(True)` is also called once the first subscription is in place, so a caller can
        wait for it before publishing.
        """
        ...

    async def ping(self) -> bool:
        """True if the backend answers now (bounded by a short timeout)."""
        ...


class SnapshotStore(Protocol):
    """The last published quote per symbol, as encoded bytes, readable by every replica."""

    async def put(self, items: Mapping[str, bytes]) -> None: ...

    async def get(self, symbols: Sequence[str]) -> dict[str, bytes]:
        """The stored bytes of those `symbols` that have a snapshot."""
        ...

    async def get_all(self) -> dict[str, bytes]: ...

    def covers(self, symbol: str) -> bool:
        """Whether this process's bus listener hears every new quote of `symbol` now; else a
        quote held of it may be old, and a read should go to the store. Always, except on a
        cluster, whose listener follows only the shards its clients watch."""
        ...


class SubscriptionRegistry(Protocol):
    """Who watches what, across replicas, with leases so a dead replica's entries expire.

    Each replica reports its own per-symbol subscriber counts with `report`, again at least every
    `ttl / 3` seconds; the fetcher calls `reconcile` to get the cluster-wide totals, which also
    rewrites the `subscriptions:active` set and `subscriptions:count:{symbol}` keys.
    """

    async def report(self, replica_id: str, counts: Mapping[str, int]) -> None: ...

    async def withdraw(self, replica_id: str) -> None:
        """Remove a replica's entries at once (clean shutdown)."""
        ...

    async def reconcile(self) -> dict[str, int]:
        """Sum of the counts of every replica whose lease has not expired."""
        ...


class HistoryStore(Protocol):
    """Recent chart points per symbol, shared by every replica: a capped, expiring log of bytes.

    Entries are appended only by the fetcher, inside the fenced `FetcherLease.publish` (so a
    deposed fetcher cannot write), one per published quote, in publish order; the store never
    looks inside them. Each symbol keeps its newest `points` entries (the oldest go as new ones
    arrive), and a symbol with no new entry for `ttl` seconds is forgotten: nobody watches it any
    more (so nobody fetches it), or its market closed, and the next session starts a fresh line.
    """

    async def read(self, symbol: str) -> list[bytes]:
        """The entries of `symbol`, oldest first; [] when it has none. Raises BusUnavailable."""
        ...

    async def sample(self, symbols: Sequence[str], points: int) -> list[list[bytes]]:
        """At most `points` (>= 2) entries of each of `symbols`, oldest first, spread evenly over
        its entries by position, its first and last included: all of them when it has no more.
        One round trip for all the symbols (a page's sparklines). Raises BusUnavailable."""
        ...


@dataclass(frozen=True, slots=True)
class LeaseHolder:
    """Who holds the fetcher lease: `holder` as it acquired it, in the term numbered `token`."""

    holder: str
    token: int


class FetcherLease(Protocol):
    """Leader election for the fetcher: one holder at a time, with a fencing token.

    The token is the holder's term number (it becomes the `epoch` of every quote it publishes):
    each new term gets a larger one than every term before it. `publish` is fenced: it stores,
    appends to the history and publishes only while `token` still holds the lease, atomically, so
    a holder that was paused past its lease cannot overwrite a newer term's quotes or chart.
    """

    async def acquire(self, holder: str) -> int | None:
        """Renew `holder`'s lease, or take it if free: the term's token, or None if taken."""
        ...

    async def release(self, holder: str, token: int) -> None:
        """Give the lease up at once (clean shutdown), if `holder` still has it."""
        ...

    async def peek(self) -> LeaseHolder | None:
        """Who holds the lease now, without touching it: None when it is free. For operators
        and readiness reasons only (a holder may be alive or not). Raises BusUnavailable."""
        ...

    async def publish(
        self,
        token: int,
        snapshots: Mapping[str, bytes],
        channel: str,
        message: bytes,
        history: Mapping[str, bytes] | None = None,
    ) -> bool:
        """Store `snapshots`, append each `history` entry (symbol -> one entry) to that symbol's
        line in the HistoryStore and publish `message`, all or nothing, only if `token` still
        holds the lease: False (and nothing written) when it does not. Raises BusUnavailable."""
        ...


@dataclass(frozen=True, slots=True)
class Backend:
    """Every shared-state port of one backend (memory or Redis), as `open_backend` built it."""

    bus: Bus
    snapshots: SnapshotStore
    registry: SubscriptionRegistry
    lease: FetcherLease
    quotas: QuotaLedger
    history: HistoryStore
    kind: str
    # Prepended to every Redis key and channel name ("" on the memory backend).
    prefix: str = ""
