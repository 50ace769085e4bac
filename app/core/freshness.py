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

from app.core.cohort import Cohort
from app.core.fanout import Fanout
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
        self.notes = 0  # notes sent alone (not along with a batch), for tests and /metrics

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
        fanout: Fanout,
        refresh: float | None,
        now: int,
        published: Callable[[str], int] = lambda symbol: 0,
    ) -> int:
        """Owe each cohort the note of the newest confirmation once it is half the threshold
        newer than the last one (so a client's prices never age past the threshold between two
        notes, and a fast feed costs no more notes than a slow one); send the notes owed for a
        quarter threshold that no batch took along. Returns how many outboxes were sent one
        alone.

        A note owed rides with the cohort's next batch, in the same write (app.core.fanout): a
        streaming client gets it for nothing. `published(symbol)`: when the quote its clients
        were last sent was published; a cohort whose every price was published in the last
        quarter threshold is current by those quotes alone and is owed nothing (when every price
        moves each tick, notes cost nothing at all)."""
        stale_after = stale_after_ms(self.interval, refresh)
        quarter = stale_after // 4
        if self.at - self._noted >= stale_after // 2:
            self._owe(fanout, refresh, stale_after, now, published)
        return self._send_late(fanout.registry.owed_notes(), now - quarter)

    def _owe(
        self,
        fanout: Fanout,
        refresh: float | None,
        stale_after: int,
        now: int,
        published: Callable[[str], int],
    ) -> None:
        self._noted = at = self.at
        recent = at - stale_after // 4
        stale = self.stale(set(self.as_of), refresh)
        shared: dict[str, bytes] = {}  # when all is current, one note per format
        # The watched symbols whose last quote is not recent, found once: a cohort watching
        # none of them is skipped with one set operation (thousands of cohorts, each time).
        registry = fanout.registry  # read in place: nothing here adds or drops a cohort
        old = frozenset(s for s in registry.counts if published(s) < recent)
        for cohort in registry.cohorts.values():
            if old.isdisjoint(cohort.symbol_set):
                continue
            symbols = cohort.symbols
            mine = {s: stale[s] for s in symbols if s in stale} if stale else {}
            fmt = cohort.fmt
            if mine:
                payload = fmt.fresh(at, now, stale_after, mine)
            elif (payload := shared.get(fmt.name)) is None:  # type: ignore[assignment]
                payload = shared[fmt.name] = fmt.fresh(at, now, stale_after, {})
            if cohort.note is None:
                cohort.noted = now
            cohort.note = payload

    def _send_late(self, cohorts: Iterable[Cohort], due_before: int) -> int:
        prepared: dict[bytes, dict[object, bytes]] = {}
        sent = 0
        for cohort in cohorts:
            note = cohort.note
            if note is None or cohort.noted > due_before:
                continue
            cohort.note = None
            framed = prepared.setdefault(note, {})
            for outbox in cohort.members:
                outbox.offer_note(note, framed)
            sent += len(cohort.members)
        self.notes += sent
        return sent
