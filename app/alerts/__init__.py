"""Price alerts: set on a symbol, evaluated once for the cluster, delivered to every tab.

- model: what an alert is, input validation, the hysteresis rule;
- store (port) with redis_store and memory_store (adapters): alerts, the fenced firing, inboxes;
- evaluator: run by the fetcher after each fenced publish (app.fetcher);
- identity: whose alerts (signed-in user, or a signed browser cookie);
- delivery: each replica's listener on `market-data:alerts`, to WebSocket tabs and long-polls.

`Alerts` bundles them for the composition root (app.main) and the endpoints (app.endpoints.alerts).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from app.alerts.delivery import AlertDelivery
from app.alerts.evaluator import AlertEvaluator
from app.alerts.identity import Identities, derive_key
from app.alerts.store import AlertStore
from app.pubsub.base import Backend


class Throttle(Protocol):
    """Alerts stored per client address (app.login.LoginThrottle is one)."""

    def take(self, address: str) -> float:
        """0 if `address` may store one now (counted), else seconds until it may."""
        ...

    def refund(self, address: str) -> None: ...


@dataclass
class Alerts:
    store: AlertStore
    evaluator: AlertEvaluator
    delivery: AlertDelivery
    limit: int  # alerts per owner
    session_secret: str = ""
    throttle: Throttle | None = None
    counts: dict[str, int] = field(default_factory=lambda: {"set": 0, "removed": 0})
    _identities: Identities | None = None

    async def identities(self) -> Identities:
        """The cookie signer; its key is read (or created) in the store on first use, so a
        replica started while Redis is down still starts. Raises BusUnavailable meanwhile."""
        if self._identities is None:
            shared = b"" if self.session_secret else await self.store.shared_secret()
            self._identities = Identities(derive_key(self.session_secret, shared))
        return self._identities


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
    throttle: Throttle | None = None,
) -> AsyncIterator[Alerts]:
    """The alerts of the deployment on `backend` (`url` is its bus URL: memory or Redis)."""
    store: AlertStore
    if url.startswith("memory://"):
        from app.alerts.memory_store import MemoryAlertStore

        store = MemoryAlertStore(backend.lease, backend.bus)
        async with _built(store, backend, session_secret, limit, rearm_pct, throttle) as alerts:
            yield alerts
        return
    if backend.kind == "redis-cluster":
        async with _on_cluster(backend, url, client_name, redis_options) as store:
            async with _built(store, backend, session_secret, limit, rearm_pct, throttle) as alerts:
                yield alerts
        return
    from app.alerts.redis_store import RedisAlertStore
    from app.pubsub.redis import connect

    client = connect(url, client_name, **(redis_options or {}))
    try:
        store = RedisAlertStore(client, backend.prefix)
        async with _built(store, backend, session_secret, limit, rearm_pct, throttle) as alerts:
            yield alerts
    finally:
        await client.aclose()


@asynccontextmanager
async def _on_cluster(
    backend: Backend, url: str, client_name: str, redis_options: Mapping[str, Any] | None
) -> AsyncIterator[AlertStore]:
    """The alert store of a deployment on a Redis Cluster (app.alerts.cluster_store)."""
    from app.alerts.cluster_store import ClusterAlertStore
    from app.pubsub.cluster import connect_cluster
    from app.pubsub.cluster_names import ClusterNames

    client = connect_cluster(url, client_name, **(redis_options or {}))
    try:
        yield ClusterAlertStore(client, ClusterNames(backend.prefix))
    finally:
        await client.aclose()


@asynccontextmanager
async def _built(
    store: AlertStore,
    backend: Backend,
    session_secret: str,
    limit: int,
    rearm_pct: float,
    throttle: Throttle | None,
) -> AsyncIterator[Alerts]:
    yield Alerts(
        store,
        AlertEvaluator(store, backend.snapshots, Decimal(str(rearm_pct))),
        AlertDelivery(store, backend.bus),
        limit,
        session_secret,
        throttle,
    )
