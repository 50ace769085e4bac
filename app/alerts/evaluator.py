"""Alert evaluation, once for the cluster: by the fetcher's term, in a loop of its own.

The fetcher (app.fetcher) hands over what it published, in order (`published(term, quotes)`),
and, before the first publish of each term, the stored snapshots it started from
(`begin_term`): the last prices published, maybe by a predecessor that died between its publish
and its evaluation, read before this term's first publish overwrites them. The evaluator keeps,
per symbol, the quotes not evaluated yet in order, and its loop (`run`, supervised by app.main)
steps every alert they reach through each of them (app.alerts.model), so it never delays a fetch
tick; a failed evaluation keeps them for the next run, so no crossing is lost when the price
moves back meanwhile. Only alerts a price reaches are read (the store's index, app.alerts.store),
at most `DUE_LIMIT` per symbol and side at a time (the rest at once after), and changes are
applied in batches of `APPLY_BATCH` by the store's fenced step: a term that lost the lease
changes nothing, so a paused ex-fetcher cannot fire what its successor fires. Evaluating the
same price twice fires nothing twice: a fired alert only re-arms, it never fires again before.

The fired message is the JSON of the wire protocol's `alert` message (docs/protocol.md) plus the
owner, with the store's sequence number spliced in (`Change.fire`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from decimal import Decimal

import orjson

from app.alerts.model import Alert, State
from app.alerts.store import AlertStore, Change
from app.logbudget import client_noise
from app.models import Quote
from app.pubsub.base import BusUnavailable
from app.supervise import reraise_if_cancelling, wait_event

log = logging.getLogger(__name__)

# One evaluation run longer than this is given up (and its quotes kept for the next run).
EVALUATE_TIMEOUT = 2.0
# Alerts read per symbol and side of the index at a time; changes per fenced script call.
DUE_LIMIT = 500
APPLY_BATCH = 500
# Due alerts one run handles at most: the rest in the next run, the event loop served between.
RUN_BUDGET = 5_000
# Quotes kept per symbol while evaluation cannot keep up (Redis away): the oldest go first.
# A symbol with no alert as last read keeps its last few only (it may have just got one).
PENDING_PER_SYMBOL = 300
PENDING_UNALERTED = 8
RETRY_AFTER = 0.5  # seconds after a failed run
# How often the symbols with alerts are read again while nothing is published (the fetcher
# prices them: a new alert's symbol must not wait for some other symbol's publish).
SYMBOLS_EVERY = 2.0
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
        rearm_pct: Decimal,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self.rearm_pct = rearm_pct
        self._clock = clock
        self.symbols: frozenset[str] = frozenset()  # symbols with alerts, as last read
        self._term: int | None = None  # the fetcher term evaluating (the latest handed over)
        self._pending: dict[str, deque[Quote]] = {}  # per symbol, not evaluated yet, in order
        self._ready = asyncio.Event()
        self._indexed = False
        self.dropped = 0  # quotes dropped unevaluated (PENDING_PER_SYMBOL)
        # For /metrics.
        self.fired = 0
        self.rearmed = 0
        self.failures = 0

    def begin_term(self, term: int, stored: Iterable[Quote]) -> None:
        """Fetcher term `term` starts from these stored quotes (read before its first publish):
        evaluated like published ones, after whatever is pending."""
        self.published(term, stored)

    def published(self, term: int, quotes: Iterable[Quote]) -> None:
        """`quotes` were published in fetcher term `term`: queue them, in order."""
        self._term = term
        for quote in quotes:
            queue = self._pending.get(quote.symbol)
            if queue is None:
                queue = self._pending[quote.symbol] = deque()
            alerted = quote.symbol in self.symbols
            while len(queue) >= (PENDING_PER_SYMBOL if alerted else PENDING_UNALERTED):
                queue.popleft()
                self.dropped += alerted
            queue.append(quote)
        if self._pending:
            self._ready.set()

    @property
    def pending(self) -> int:
        return sum(len(q) for q in self._pending.values())

    async def run(self) -> None:
        """The evaluation loop: evaluates whatever was handed over, as it comes (first, once,
        indexes alerts an older version stored)."""
        while not self._indexed:
            try:
                await self._store.reindex(self.rearm_pct, int(self._clock() * 1000))
                self._indexed = True
            except BusUnavailable as exc:
                log.warning("stored alerts not indexed yet (retrying): %s", exc)
                await asyncio.sleep(RETRY_AFTER * 4)
        while True:
            await wait_event(self._ready, SYMBOLS_EVERY)
            self._ready.clear()
            if not self._pending:
                await self._refresh_symbols()
                continue
            if not await self.evaluate():
                await asyncio.sleep(RETRY_AFTER)
            if self._pending:
                self._ready.set()

    async def _refresh_symbols(self) -> None:
        if self._term is None:
            return  # never the fetcher: nobody reads them here
        try:
            self.symbols = frozenset(await self._store.symbols())
        except BusUnavailable as exc:
            log.warning("could not read the symbols with alerts: %s", exc)

    async def evaluate(self) -> bool:
        """One run over the pending quotes (at most RUN_BUDGET due alerts): False if it failed
        (what it did not do stays pending). Never raises (but cancellation)."""
        try:
            async with asyncio.timeout(EVALUATE_TIMEOUT):
                await self._evaluate()
            return True
        except (BusUnavailable, TimeoutError, ValueError) as exc:
            reraise_if_cancelling()
            self.failures += 1
            log.warning("alert evaluation failed (retried with what it missed): %s", exc)
            return False

    async def _evaluate(self) -> None:
        term = self._term
        if term is None or not self._pending:
            return
        self.symbols = frozenset(await self._store.symbols())
        for symbol in [s for s in self._pending if s not in self.symbols]:
            del self._pending[symbol]
        budget = RUN_BUDGET
        while self._pending and budget > 0:
            heads = {s: q[0] for s, q in self._pending.items()}
            due = await self._store.due({s: q.price for s, q in heads.items()}, DUE_LIMIT)
            budget -= len(due.alerts)
            changes, changed = self._steps(due.alerts, heads)
            for at in range(0, len(changes), APPLY_BATCH):
                if not await self._apply(term, changes[at : at + APPLY_BATCH]):
                    self._pending.clear()  # the term is over: its successor starts afresh
                    return
            for symbol in heads:
                # A symbol with more due alerts than were read keeps its quote for another round,
                # unless this round changed none of them (nothing more would come of it).
                if symbol in due.more and symbol in changed:
                    continue
                queue = self._pending[symbol]
                queue.popleft()
                if not queue:
                    del self._pending[symbol]

    def _steps(
        self, due: list[tuple[Alert, bytes]], heads: dict[str, Quote]
    ) -> tuple[list[Change], set[str]]:
        now_ms = int(self._clock() * 1000)
        changes = []
        for alert, stored in due:
            quote = heads.get(alert.symbol)
            new = None if quote is None else alert.step(quote.price, self.rearm_pct, now_ms)
            if new is None or quote is None:
                continue
            fire = fired_message(new, quote) if new.state is State.FIRED else None
            changes.append(Change(stored, new, self.rearm_pct, fire))
        return changes, {c.new.symbol for c in changes}

    async def _apply(self, term: int, changes: list[Change]) -> bool:
        """Apply in term `term`: False if it is over."""
        if not changes:
            return True
        applied = await self._store.apply(term, changes)
        if applied is None:
            log.info("term %d is over: its alert changes were not applied", term)
            return False
        self.fired += len(applied.fired)
        self.rearmed += applied.rearmed
        for message in applied.fired:
            text = message[:200].decode(errors="replace")
            line = client_noise.admit("alert_fired", f"alert fired: {text}", log)
            if line is not None:
                log.info("%s", line)
        return True
