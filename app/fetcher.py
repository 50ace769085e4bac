"""The fetch loop: every interval, price what somebody watches and publish what changed.

One tick: reconcile the cluster's subscriptions (which also refreshes the `subscriptions:*` keys),
fetch the watched symbols plus the default board from the feed, stamp each *changed* quote with
the next `seq` for its symbol and this term's `epoch`, store it as the symbol's snapshot, append
its `(source_time, price)` to the symbol's chart history (app/history.py), and publish all of
them as one message on `market-data:updates`, with the symbols the source priced again unchanged
(`confirmed`: still current, so no client calls a quiet symbol delayed). Ticks never overlap: a
slow fetch is cut off by a timeout shorter than the interval, and a missed tick is skipped, not
queued.

A symbol that becomes watched between ticks (an event on `market-data:subscriptions`) is fetched
at once, so a new subscriber does not wait a whole interval for its first price.

Only the holder of the fetcher lease fetches, so N replicas cost the providers what one does. It
holds it as `{replica id}:{nonce}` (app.identity), so two processes misconfigured with the same
REPLICA_ID are still two candidates, and only one of them fetches. The
lease's token is the term's `epoch`; publishing is fenced by it, so a paused ex-leader whose lease
ran out cannot publish over its successor. Other replicas keep trying to take the lease over.

The feed's `status()` (live, or stale and why) rides along in the update message, and is sent on
its own when it changes and on every tick while it is not plainly live, so every replica (even
one that joins late) tells its clients. Symbols the feed rejects are announced once in the same
message (`rejected`) and not asked for again for `reject_retry` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any

from app.alerts.evaluator import AlertEvaluator
from app.cooldown import Cooldowns
from app.feeds.base import Feed, FeedError, FetchResult
from app.history import encode_point
from app.identity import lease_holder, new_nonce
from app.models import (
    LIVE,
    FeedStatus,
    Quote,
    Rejection,
    SubscriptionChange,
    decode_quote,
    encode_quote,
    encode_update,
    is_newer,
)
from app.pubsub.base import SUBSCRIPTIONS_CHANNEL, UPDATES_CHANNEL, Backend, BusUnavailable
from app.stats import Histogram
from app.supervise import reraise_if_cancelling, wait_event

log = logging.getLogger(__name__)


class Fetcher:
    def __init__(
        self,
        feed: Feed,
        backend: Backend,
        *,
        interval: float,
        board: Sequence[str],
        replica_id: str = "local",
        lease_refresh: float = 0.5,
        clock: Callable[[], float] = time.time,
        reject_retry: float = 900.0,
        new_symbols_per_minute: float = 0.0,
        nonce: str | None = None,
        alerts: AlertEvaluator | None = None,
    ) -> None:
        self.feed = feed
        # Price alerts: handed what this fetcher published (and its term's starting point), in
        # order; evaluated in their own supervised loop (app.alerts.evaluator), fenced by term.
        self.alerts = alerts
        self._backend = backend
        self._replica_id = replica_id
        # Who holds the lease: this process, not just its replica id (see app.identity).
        self.holder = lease_holder(replica_id, nonce or new_nonce())
        self._lease_refresh = lease_refresh
        self.interval = interval
        self._board = tuple(board)
        self._clock = clock
        # What this fetcher published (or found stored when its term began): the source of the
        # next seq and of "changed?". Not app.core.latest, which holds what the bus delivered:
        # that lags our own publishes, and stamping from it could hand a seq out twice.
        self._published: dict[str, Quote] = {}
        self._seeded = False
        self._urgent: set[str] = set()
        self._wake = asyncio.Event()
        self.epoch = 0
        # The fencing token of our current term as fetcher; None while another replica fetches.
        self.term: int | None = None
        self.lease_error: str | None = None
        # Set when this replica shuts down: it never takes the lease again.
        self.draining = False
        self.watched: frozenset[str] = frozenset()
        self.watchers: dict[str, int] = {}  # cluster-wide watchers of each watched symbol
        # Never-priced watched symbols not asked about yet, and since when they wait.
        self._waiting_since: dict[str, float] = {}
        self.last_success: float | None = None  # monotonic time of the last complete tick
        self.last_error: str | None = None
        self.ticks = 0
        self.status: FeedStatus = LIVE
        self._status_sent: FeedStatus | None = None
        self._reject_retry = reject_retry
        self.rejected = Cooldowns()  # symbols the feed said it cannot price
        self.refresh = interval  # seconds between two fetches of one symbol (quota pacing)
        self.feed_calls = 0  # calls into the feed: with N replicas, only the leader's grow
        # Symbols never priced yet cost provider credits even when they turn out to be junk: a
        # client subscribing to made-up symbols must not spend the quota everybody shares. Feeds
        # whose check_symbol is authoritative (simulated, replay) need no such budget.
        self._new_rate = (
            0.0 if getattr(feed, "authoritative_symbols", False) else new_symbols_per_minute / 60
        )
        self._new_tokens = max(self._new_rate * 60, 1.0)
        self._new_stamp = time.monotonic()
        # For /metrics: fetch outcomes (ok, error, timeout), their duration, quotes published.
        self.fetch_outcomes: dict[str, int] = {}
        self.fetch_duration = Histogram()
        self.published = 0

    @property
    def role(self) -> str:
        return "leader" if self.term is not None else "follower"

    def alive(self) -> bool:
        """Leader: a tick completed within three intervals (at least 10 s). Follower: the lease
        answers, so this replica is ready to take over."""
        if self.term is None:
            return self.lease_error is None and self.ticks > 0
        if self.last_success is None:
            return False
        return time.monotonic() - self.last_success < max(3 * self.interval, 10.0)

    def announcement(self) -> dict[str, Any] | None:
        """What this process's heartbeat says while it holds the lease (app.core.fetcher_watch):
        its holder, term, and the seconds since its fetch loop last completed a tick. None as a
        follower, and before the first completed tick: holding the lease is not fetching."""
        if self.term is None or self.last_success is None:
            return None
        age = time.monotonic() - self.last_success
        return {"holder": self.holder, "term": self.term, "tick_age": round(age, 3)}

    async def run(self) -> None:
        """The fetch loop, the lease keeper, and the listener for newly watched symbols."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._listen_for_new_symbols())
            tg.create_task(self._keep_lease())
            await self._loop()

    async def release(self) -> None:
        """Clean shutdown: hand the lease over at once instead of letting it expire."""
        if self.term is not None:
            try:
                await self._backend.lease.release(self.holder, self.term)
            except BusUnavailable as exc:
                log.warning("could not release the fetcher lease (it will expire): %s", exc)
            self.term = None

    async def _keep_lease(self) -> None:
        while True:
            await self._refresh_lease()
            await asyncio.sleep(self._lease_refresh)

    async def _refresh_lease(self) -> None:
        if self.draining:
            self.term = None
            return
        try:
            token = await self._backend.lease.acquire(self.holder)
        except BusUnavailable as exc:
            self.lease_error = str(exc)
            return  # keep our belief: the fenced publish refuses if the lease is really gone
        self.lease_error = None
        if token == self.term:
            return
        if token is None:
            log.warning("replica %s lost the fetcher lease (term %s)", self.holder, self.term)
        else:
            log.info("replica %s is the fetcher now (term %d)", self.holder, token)
            self._seeded = False  # re-read seqs: the previous fetcher may have moved them on
            self._wake.set()  # fetch at once rather than at the next tick
        self.term = token

    async def _loop(self) -> None:
        next_tick = time.monotonic()
        while True:
            await self.tick()
            next_tick += self.interval
            now = time.monotonic()
            if next_tick < now:  # fell behind: skip the missed ticks instead of bunching them
                next_tick = now + self.interval
            # Early fetches never push the regular tick back: once it is due, it runs.
            while (left := next_tick - time.monotonic()) > 0 and await wait_event(self._wake, left):
                self._wake.clear()
                if self.term is not None and not self._seeded:
                    break  # we just became the fetcher: tick now, not an interval later
                urgent, self._urgent = self._urgent, set()
                fresh = [s for s in urgent if s not in self._published]
                if fresh and self._seeded and self.term is not None:
                    try:
                        await self._fetch_and_publish(fresh)
                    except (BusUnavailable, FeedError, TimeoutError) as exc:
                        reraise_if_cancelling()
                        log.warning("early fetch of %s failed: %s", ", ".join(fresh), exc)

    async def tick(self) -> None:
        """One full poll if this replica is the fetcher. Errors are logged, never raised."""
        await self._refresh_lease()
        if self.term is None:
            self.ticks += 1
            return
        try:
            if not self._seeded:
                await self._seed()
            try:
                self.watchers = await self._backend.registry.reconcile()
                self.watched = frozenset(self.watchers)
                # Symbols nobody watches any more stop waiting for their first price.
                self._waiting_since = {
                    s: t for s, t in self._waiting_since.items() if s in self.watched
                }
            except BusUnavailable as exc:
                log.warning("keeping last known subscriptions: %s", exc)
            alerted = sorted(self.alerts.symbols) if self.alerts else []  # priced when set
            symbols = list(dict.fromkeys([*self._board, *sorted(self.watched), *alerted]))
            self._note_refresh(len(symbols))
            await self._fetch_and_publish(symbols)
            self.last_success = time.monotonic()
            self.last_error = None
        except (BusUnavailable, FeedError, TimeoutError) as exc:
            reraise_if_cancelling()
            self.last_error = str(exc) or type(exc).__name__
            log.warning("fetch tick failed: %s", exc)
        finally:
            self.ticks += 1

    async def _seed(self) -> None:
        """Continue seq from the stored snapshots, so a new term never rewinds a symbol."""
        assert self.term is not None
        for data in (await self._backend.snapshots.get_all()).values():
            try:
                quote = decode_quote(data)
            except ValueError:
                continue
            if is_newer(quote, self._published.get(quote.symbol)):
                self._published[quote.symbol] = quote
        if self.alerts is not None:  # before this term's first publish overwrites them
            self.alerts.begin_term(self.term, self._published.values())
        # The lease hands out ever larger tokens; a stored quote from a clock-skewed term must
        # still order before ours.
        self.epoch = max([self.term, *(q.epoch + 1 for q in self._published.values())])
        self._seeded = True
        log.info("fetcher term %d starts with %d stored quotes", self.epoch, len(self._published))

    def _note_refresh(self, count: int) -> None:
        refresh = self.feed.refresh_interval(count, self.interval)
        if refresh != self.refresh:
            log.info(
                "refreshing %d symbols every %.1fs each (poll every %gs, within %s's quota)",
                count, refresh, self.interval, self.feed.name,
            )  # fmt: skip
        self.refresh = refresh

    def _admit_new(self, symbols: list[str]) -> list[str]:
        """Drop never-priced symbols beyond the new-symbol budget (they wait for a later tick).
        The most watched go first, then those waiting longest; never alphabetical order, which
        let junk named `0000`... go before everything else."""
        if not self._new_rate:
            return symbols
        now = time.monotonic()
        burst = max(self._new_rate * 60, 1.0)
        self._new_tokens = min(burst, self._new_tokens + (now - self._new_stamp) * self._new_rate)
        self._new_stamp = now
        admitted = [s for s in symbols if s in self._published or s in self._board]
        new = [s for s in symbols if s not in self._published and s not in self._board]
        waiting = self._waiting_since
        new.sort(key=lambda s: (-self.watchers.get(s, 0), waiting.setdefault(s, now)))
        take = min(len(new), int(self._new_tokens))
        self._new_tokens -= take
        for symbol in new[:take]:
            waiting.pop(symbol, None)
        return admitted + new[:take]

    def _cooling(self, symbol: str) -> bool:
        return self.rejected.reason(symbol) is not None

    def _rejection(self, symbol: str) -> Rejection:
        reason = self.rejected.reason(symbol) or ""
        return Rejection(symbol, reason, self.feed.name, round(self.rejected.remaining(symbol)))

    async def _fetch_and_publish(self, symbols: Sequence[str]) -> None:
        # The term these quotes are stamped in; the lease keeper may move on meanwhile.
        term = self.term
        if term is None:
            return
        candidates = self._admit_new(
            [s for s in symbols if self.feed.check_symbol(s) is None and not self._cooling(s)]
        )
        if candidates:
            self.feed_calls += 1
            started = time.perf_counter()
            outcome = "error"
            try:
                async with asyncio.timeout(self.interval * 0.8):
                    result = await self.feed.fetch(candidates)
                outcome = "ok"
            except TimeoutError:
                outcome = "timeout"
                raise
            finally:
                self.fetch_duration.observe(time.perf_counter() - started)
                self.fetch_outcomes[outcome] = self.fetch_outcomes.get(outcome, 0) + 1
        else:
            result = FetchResult()
        # A symbol still cooling down that somebody (newly) watches: tell its watchers again.
        again = [s for s in symbols if s in self.watched and self._cooling(s)]
        for symbol, reason in result.rejected.items():
            log.info("feed %s rejected %s: %s", self.feed.name, symbol, reason)
            self.rejected.add(symbol, reason, self._reject_retry)
        rejected = [self._rejection(s) for s in [*again, *result.rejected]]
        status = self.feed.status()
        if status != self.status:
            log.log(
                logging.INFO if status.state == "live" else logging.WARNING,
                "feed status %s%s%s",
                status.state,
                f" ({status.reason})" if status.reason else "",
                f": {status.detail}" if status.detail else "",
            )
        self.status = status
        changed = self._stamp(result.quotes)
        # Priced again at the same price: still current, which only the fetcher knows (clients
        # are sent changes alone). Every replica hears it and tells its clients, conflated.
        moved = {q.symbol for q in changed}
        confirmed = [q.symbol for q in result.quotes if q.symbol not in moved]
        announce = status != self._status_sent or status != LIVE
        if changed or rejected or announce or confirmed:
            await self._publish(term, changed, status, rejected, confirmed)

    def _stamp(self, quotes: Iterable[Quote]) -> list[Quote]:
        now_ms = int(self._clock() * 1000)
        out: list[Quote] = []
        for quote in quotes:
            last = self._published.get(quote.symbol)
            if last is not None and last.same_market_data(quote):
                continue
            seq = last.seq + 1 if last is not None else 1
            out.append(replace(quote, seq=seq, epoch=self.epoch, published_at=now_ms))
        return out

    async def _publish(
        self,
        term: int,
        quotes: list[Quote],
        status: FeedStatus | None = None,
        rejected: Sequence[Rejection] = (),
        confirmed: Sequence[str] = (),
    ) -> None:
        encoded = {q.symbol: encode_quote(q) for q in quotes}
        message = encode_update(
            self.epoch, list(encoded.values()), status, rejected, self.refresh,
            confirmed, int(self._clock() * 1000),
        )  # fmt: skip
        # Snapshots, chart points and message go together, fenced by our term (see
        # FetcherLease.publish): every replica's chart is the line this fetcher published.
        points = {q.symbol: encode_point(q) for q in quotes}
        if not await self._backend.lease.publish(
            term, encoded, UPDATES_CHANNEL, message, history=points
        ):
            log.warning("term %d is over: another replica fetches now; not publishing", term)
            if self.term == term:
                self.term = None
            return
        self._status_sent = status
        self.published += len(quotes)
        for quote in quotes:
            if is_newer(quote, self._published.get(quote.symbol)):
                self._published[quote.symbol] = quote
        if self.alerts is not None:  # evaluated in the evaluator's own loop, in this order
            self.alerts.published(term, quotes)

    async def _listen_for_new_symbols(self) -> None:
        async for message in self._backend.bus.listen([SUBSCRIPTIONS_CHANNEL]):
            try:
                added = SubscriptionChange.parse(message.data).added
            except ValueError:
                log.warning("ignoring malformed subscription event")
                continue
            if added:
                self._urgent.update(added)
                self._wake.set()
