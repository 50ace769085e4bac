"""How fresh each price is: when its source last confirmed it, changed or not.

Only changed prices are published, so a quote's own times say when its price last *moved*, not
whether it is still current: a quiet symbol would look delayed after a few ticks. The fetcher
also lists the symbols its source priced again unchanged (`confirmed` in the update message), and
every replica keeps, per symbol, the newest time it heard either (`as_of`). Clients learn it from
a conflated freshness note (the wire format's `fresh`): at most one per connection per half
threshold (every other tick at the defaults), the same bytes for every connection whose symbols
are all current, and one per cohort (connections watching the same set) that has stale ones.
Never a frame per unchanged quote per client.

A symbol is stale when the newest confirmation heard (`at`) is more than `stale_after` past its
own: two of its refresh periods (the fetch interval, or longer under a provider's quota pacing)
plus 2 s. Measuring against `at` rather than this replica's clock keeps the fetcher's clock the
only one in the comparison; when nothing is confirmed at all, `at` stops and the notes stop, and
clients age their data from the last note (see docs/protocol.md, `fresh`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from app.core.fanout import Cohort
from app.core.outbox import Outbox
from app.core.wire import WireFormat
from app.models import Quote

SLACK_MS = 2000


def stale_after_ms(interval: float, refresh: float | None) -> int:
    """How long a price stays current without a confirmation: two refresh periods plus 2 s."""
    return int(2 * max(refresh or interval, interval) * 1000) + SLACK_MS


class Freshness:
    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.as_of: dict[str, int] = {}  # symbol -> newest confirmation heard (ms, fetcher clock)
        self.at = 0  # the newest confirmation of any symbol: a note's time
        self._noted = 0  # the `at` of the last notes sent
        self.notes = 0  # notes written or queued, for tests and /metrics

    def heard(self, quotes: Iterable[Quote], confirmed: Iterable[str], confirmed_at: int) -> None:
        """An update message: its changed quotes were current when published, its confirmed
        symbols at `confirmed_at`."""
        as_of, newest = self.as_of, self.at
        for quote in quotes:
            at = quote.published_at
            if at > as_of.get(quote.symbol, 0):
                as_of[quote.symbol] = at
            newest = max(newest, at)
        if confirmed_at > 0:
            for symbol in confirmed:
                if confirmed_at > as_of.get(symbol, 0):
                    as_of[symbol] = confirmed_at
            newest = max(newest, confirmed_at)
        self.at = newest

    def stale(self, symbols: Iterable[str], refresh: float | None) -> dict[str, int]:
        """Those of `symbols` priced before but not confirmed in time: {symbol: as_of}."""
        limit = self.at - stale_after_ms(self.interval, refresh)
        as_of = self.as_of
        return {s: t for s in symbols if (t := as_of.get(s, 0)) and t < limit}

    def told(
        self, fmt: WireFormat, symbols: Iterable[str], refresh: float | None, now: int
    ) -> bytes:
        """The note for a one-off answer (a page, a long-poll) about `symbols`."""
        stale_after = stale_after_ms(self.interval, refresh)
        return fmt.fresh(self.at, now, stale_after, self.stale(symbols, refresh))

    def note(
        self,
        outboxes: Iterable[Outbox],
        watched: Callable[[], Iterable[str]],
        refresh: float | None,
        now: int,
        published: Callable[[str], int] = lambda symbol: 0,
    ) -> int:
        """Send each outbox watching something the note of the newest confirmation, once it is
        half the threshold newer than the last one sent (a client's prices never age past the
        threshold between two notes, and a fast feed costs no more writes than a slow one);
        returns how many outboxes were given one. `published(symbol)`: when the quote its
        clients were last sent was published; a cohort whose every price was published in the
        last quarter threshold is current by those quotes alone and gets no note (when every
        price moves each tick, the notes cost nothing)."""
        stale_after = stale_after_ms(self.interval, refresh)
        if self.at - self._noted < stale_after // 2:
            return 0
        self._noted = at = self.at
        stale = self.stale(watched(), refresh)
        recent = at - stale_after // 4
        covered: dict[object, bool] = {}
        payloads: dict[tuple[str, object], bytes] = {}
        prepared: dict[bytes, dict[object, bytes]] = {}
        given = 0
        for outbox in outboxes:
            if not outbox.symbols:
                continue
            cohort = outbox.cohort if isinstance(outbox.cohort, Cohort) else None
            symbols: Iterable[str] = cohort.symbols if cohort is not None else outbox.symbols
            group = cohort if cohort is not None else outbox
            done = covered.get(group)
            if done is None:
                done = covered[group] = all(published(s) >= recent for s in symbols)
            if done:
                continue
            # When all is current every connection of a format shares one note; otherwise the
            # connections watching the same set (a cohort) do.
            key = (outbox.fmt.name, group if stale else None)
            payload = payloads.get(key)
            if payload is None:
                mine = {s: stale[s] for s in symbols if s in stale} if stale else {}
                payload = payloads[key] = outbox.fmt.fresh(at, now, stale_after, mine)
            outbox.offer_note(payload, prepared.setdefault(payload, {}))
            given += 1
        self.notes += given
        return given
