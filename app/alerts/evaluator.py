"""Alert evaluation, once for the cluster: by the fetcher, right after each fenced publish.

The fetcher (app.fetcher) calls `on_published(term, quotes)` after its publish succeeded; only
quotes of symbols that have alerts cost anything (the index `symbols` is re-read with each call,
one SMEMBERS). Each alert steps through its hysteresis (app.alerts.model) and the changes are
applied by the store in one fenced step (app.alerts.store): a term that lost the lease changes
nothing, so a paused ex-fetcher cannot fire what its successor fires.

No crossing is lost to a failover or an error: at the first call of a new term, and after any
failed evaluation, every alert is evaluated against the stored snapshots too (the last prices
published, maybe by a predecessor that died between its publish and its evaluation). Evaluating
the same price twice fires nothing twice: a fired alert only re-arms, it never fires again
before it has.

The fired message is the JSON of the wire protocol's `alert` message (docs/protocol.md) plus the
owner, with the store's sequence number spliced in (`Change.fire`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal

import orjson

from app.alerts.model import Alert, State
from app.alerts.store import AlertStore, Change
from app.models import Quote, decode_quote
from app.pubsub.base import BusUnavailable, SnapshotStore

log = logging.getLogger(__name__)

# An evaluation that takes longer is given up (and caught up on at the next publish): alerts
# must not hold the fetch loop.
EVALUATE_TIMEOUT = 1.0
MESSAGE_PREFIX = b'{"type":"alert","seq":'


def fired_message(alert: Alert, quote: Quote) -> tuple[bytes, bytes]:
    """The fired message around its sequence number: (prefix, suffix)."""
    body = orjson.dumps({
        "owner": alert.owner, "id": alert.id, "symbol": alert.symbol, "kind": alert.kind,
        "condition": alert.condition(), "level": str(alert.level),
        "direction": "up" if alert.up else "down", "price": str(quote.price),
        "currency": quote.currency, "source": quote.source, "source_time": quote.source_time,
        "published_at": quote.published_at,
        "note": alert.note, "fired_at": alert.fired_at, "fired": alert.fired,
    })  # fmt: skip
    return MESSAGE_PREFIX, b"," + body[1:]


class AlertEvaluator:
    def __init__(
        self,
        store: AlertStore,
        snapshots: SnapshotStore,
        rearm_pct: Decimal,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._snapshots = snapshots
        self.rearm_pct = rearm_pct
        self._clock = clock
        self.symbols: frozenset[str] = frozenset()  # symbols with alerts, as last read
        self._caught_up: int | None = None  # the term whose catch-up against snapshots is done
        # For /metrics.
        self.fired = 0
        self.rearmed = 0
        self.failures = 0

    async def on_published(self, term: int, quotes: Sequence[Quote]) -> None:
        """Evaluate the alerts on `quotes` (just published in fetcher term `term`). Never
        raises (but cancellation): a failure is logged and caught up on later."""
        try:
            async with asyncio.timeout(EVALUATE_TIMEOUT):
                await self._evaluate(term, quotes)
        except (BusUnavailable, TimeoutError, ValueError) as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            self.failures += 1
            self._caught_up = None
            log.warning("alert evaluation failed (caught up on at the next publish): %s", exc)

    async def _evaluate(self, term: int, quotes: Sequence[Quote]) -> None:
        self.symbols = frozenset(await self._store.symbols())
        latest = {q.symbol: q for q in quotes if q.symbol in self.symbols}
        if self._caught_up != term:
            rest = sorted(self.symbols - latest.keys())
            for data in (await self._snapshots.get(rest)).values() if rest else ():
                quote = decode_quote(data)
                latest.setdefault(quote.symbol, quote)
        if latest:
            await self._apply(term, latest)
        self._caught_up = term

    async def _apply(self, term: int, latest: Mapping[str, Quote]) -> None:
        now_ms = int(self._clock() * 1000)
        changes = []
        for alert, stored in await self._store.for_symbols(sorted(latest)):
            quote = latest.get(alert.symbol)
            if quote is None:
                continue
            new = alert.step(quote.price, self.rearm_pct, now_ms)
            if new is None:
                continue
            fire = fired_message(new, quote) if new.state is State.FIRED else None
            changes.append(Change(stored, new, fire))
        if not changes:
            return
        fired = await self._store.apply(term, changes)
        if fired is None:
            log.info("term %d is over: its alert changes were not applied", term)
            return
        self.fired += len(fired)
        self.rearmed += sum(1 for c in changes if c.fire is None)
        for message in fired:
            log.info("alert fired: %s", message[:200].decode(errors="replace"))
