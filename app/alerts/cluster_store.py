"""The Redis alert store on a Redis Cluster (`REDIS_CLUSTER=on`): app.alerts.redis_store's keys
and scripts, every key in the fetcher lease's slot.

The fenced firing script checks the lease and changes the alerts in one script, so the alerts
live in the lease's slot (`alerts:{fetcher}:all`, `alerts:{fetcher}:owner:<owner>`, ...; see
app.pubsub.cluster_names), and it announces what fired with SPUBLISH on the alerts channel,
which is in that slot too (`market-data:alerts:{fetcher}`), where every replica's listener
follows it. Alerts are few and small (bounded per owner and in all): one slot holds them.
"""

from __future__ import annotations

from app.alerts.redis_store import _APPLY, RedisAlertStore
from app.alerts.store import MAX_ALERTS
from app.pubsub.cluster_names import LEASE_TAG, ClusterNames

# Sharded pub/sub: a cluster's listeners follow the alerts channel with SSUBSCRIBE.
_CLUSTER_APPLY = _APPLY.replace("redis.call('PUBLISH',", "redis.call('SPUBLISH',")
assert _CLUSTER_APPLY != _APPLY, "the firing script no longer publishes as expected"


class ClusterAlertStore(RedisAlertStore):
    def __init__(
        self,
        client: object,
        names: ClusterNames,
        *,
        max_alerts: int = MAX_ALERTS,
        rate: tuple[float, float] = (10, 20),
    ):
        super().__init__(client, names.prefix, max_alerts=max_alerts, rate=rate)  # type: ignore[arg-type]
        self._names = names
        self._p = f"{names.prefix}alerts:{LEASE_TAG}:"
        self._apply = self._client.register_script(_CLUSTER_APPLY)
