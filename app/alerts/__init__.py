"""Price alerts: set on a symbol, evaluated once for the cluster, delivered to every tab.

- model: what an alert is, input validation, the hysteresis rule;
- store (port) with redis_store and memory_store (adapters): alerts and their price index, the
  fenced firing, inboxes, idle expiry, the per-address rate;
- evaluator: its own supervised loop, fed in order what the fetcher publishes (app.fetcher);
- identity: whose alerts (signed-in user, or a signed browser cookie);
- delivery: each replica's listener on `market-data:alerts`, to WebSocket tabs and long-polls.

`Alerts` bundles them for the composition root (app.main) and the endpoints (app.endpoints.alerts).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from app.alerts.delivery import AlertDelivery
from app.alerts.evaluator import AlertEvaluator
from app.alerts.identity import Identities, derive_key
from app.alerts.store import AlertStore
from app.pubsub.base import Backend, BusUnavailable

log = logging.getLogger(__name__)

# A visit of an owner is written to the store at most this often per replica (its alerts expire
# after days: an hour's precision is plenty), for at most this many owners remembered.
TOUCH_EVERY = 3600.0
TOUCHED_MAX = 10_000
SWEEP_EVERY = 600.0  # seconds between two sweeps for idle owners' alerts


@dataclass
class Alerts:
    store: AlertStore
    evaluator: AlertEvaluator
    delivery: AlertDelivery
    limit: int  # alerts per owner
    session_secret: str = ""
    max_symbols: int = 0  # symbols with alerts at most (0: no bound)
    idle_days: float = 30.0  # an anonymous owner's alerts expire after this long unseen
    counts: dict[str, int] = field(default_factory=lambda: {"set": 0, "removed": 0, "expired": 0})
    _identities: Identities | None = None
    _touched: OrderedDict[str, float] = field(default_factory=OrderedDict)

    async def identities(self) -> Identities:
        """The cookie signer; its key is read (or created) in the store on first use, so a
        replica started while Redis is down still starts. Raises BusUnavailable meanwhile."""
        if self._identities is None:
            shared = b"" if self.session_secret else await self.store.shared_secret()
            self._identities = Identities(derive_key(self.session_secret, shared))
        return self._identities

    async def visited(self, owner: str) -> None:
        """`owner`'s page or connection is here: its alerts do not expire yet. Written at most
        once per TOUCH_EVERY per owner by this replica; a failure only logs."""
        now = time.monotonic()
        last = self._touched.get(owner)
        if not owner.startswith("anon:") or (last is not None and now - last < TOUCH_EVERY):
            return
        try:
            await self.store.touch([owner], int(time.time() * 1000))
        except BusUnavailable as exc:
            log.warning("could not note an alert owner's visit: %s", exc)
            return
        self._touched.pop(owner, None)
        self._touched[owner] = now
        while len(self._touched) > TOUCHED_MAX:
            self._touched.popitem(last=False)

    async def sweep(self) -> int:
        """Expire the alerts of anonymous owners unseen for `idle_days`: how many owners."""
        before = int((time.time() - self.idle_days * 86400) * 1000)
        expired = 0
        while (done := await self.store.expire(before)) > 0:
            expired += done
        self.counts["expired"] += expired
        if expired:
            log.info("expired the alerts of %d owners unseen for %g days", expired, self.idle_days)
        return expired

    async def run_sweeps(self, every: float = SWEEP_EVERY) -> None:
        """The supervised loop of `sweep` (every replica runs it: expiring is idempotent)."""
        while True:
            try:
                await self.sweep()
            except BusUnavailable as exc:
                log.warning("idle alerts not expired this time: %s", exc)
            await asyncio.sleep(every)


@asynccontextmanager
async def open_alerts(
    backend: Backend,
    url: str,
    *,
    client_name: str,
    session_secret: str,
    limit: int,
    rearm_pct: float,
    redis_options: Mapping[str, Any] | None = None,
    rate: tuple[float, float] = (10, 20),
    max_symbols: int = 0,
    idle_days: float = 30.0,
) -> AsyncIterator[Alerts]:
    """The alerts of the deployment on `backend` (`url` is its bus URL: memory or Redis).
    `rate`: alerts stored per client address, (per minute, burst), shared by replicas."""
    store: AlertStore
    options = (session_secret, limit, rearm_pct, max_symbols, idle_days)
    if url.startswith("memory://"):
        from app.alerts.memory_store import MemoryAlertStore

        store = MemoryAlertStore(backend.lease, backend.bus, rate=rate)
        yield _built(store, backend, *options)
        return
    if backend.kind == "redis-cluster":
        async with _on_cluster(backend, url, client_name, redis_options, rate) as store:
            yield _built(store, backend, *options)
        return
    from app.alerts.redis_store import RedisAlertStore
    from app.pubsub.redis import connect

    client = connect(url, client_name, **(redis_options or {}))
    try:
        store = RedisAlertStore(client, backend.prefix, rate=rate)
        yield _built(store, backend, *options)
    finally:
        await client.aclose()


@asynccontextmanager
async def _on_cluster(
    backend: Backend,
    url: str,
    client_name: str,
    redis_options: Mapping[str, Any] | None,
    rate: tuple[float, float],
) -> AsyncIterator[AlertStore]:
    """The alert store of a deployment on a Redis Cluster (app.alerts.cluster_store)."""
    from app.alerts.cluster_store import ClusterAlertStore
    from app.pubsub.cluster import cluster_client
    from app.pubsub.cluster_names import ClusterNames

    async with cluster_client(url, client_name, **(redis_options or {})) as client:
        yield ClusterAlertStore(client, ClusterNames(backend.prefix), rate=rate)


def _built(
    store: AlertStore,
    backend: Backend,
    session_secret: str,
    limit: int,
    rearm_pct: float,
    max_symbols: int,
    idle_days: float,
) -> Alerts:
    return Alerts(
        store,
        AlertEvaluator(store, Decimal(str(rearm_pct))),
        AlertDelivery(store, backend.bus),
        limit,
        session_secret,
        max_symbols,
        idle_days,
    )
