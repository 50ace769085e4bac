"""A cohort: the outboxes that watch the same symbol set in the same wire format, through the
same kind of sink, so the fan-out (app.core.fanout) builds their payload once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import cast

from app.core.outbox import Outbox
from app.core.wire import WireFormat

# Prepares a payload for a kind of sink (a transport's framing); None: the members have no sink.
Prepare = Callable[[bytes], bytes] | None
CohortKey = tuple[str, Prepare, tuple[str, ...]]
# A kind of cohort: a wire format and a framing. Cohorts of a kind given the same quotes get the
# same bytes.
Kind = tuple[str, Prepare]


class Cohort:
    """The outboxes that watch exactly `symbols` (sorted) in wire format `fmt`, through sinks
    that prepare a payload with `prepare` (the same transport), or through none."""

    __slots__ = (
        "fmt", "prepare", "symbols", "symbol_set", "texts_of", "members", "_note", "noted", "_owing"
    )  # fmt: skip

    def __init__(
        self, fmt: WireFormat, prepare: Prepare, symbols: tuple[str, ...], owing: set[Cohort]
    ) -> None:
        self.fmt = fmt
        self.prepare = prepare
        self.symbols = symbols
        self.symbol_set = frozenset(symbols)
        # One C call that picks this cohort's texts out of a publish's {symbol: text}.
        self.texts_of = _picker(symbols)
        self.members: set[Outbox] = set()
        # A freshness note owed to every member (app.core.freshness), due since `noted` (ms): it
        # rides along with the cohort's next batch, in the same write, or goes alone when late.
        self._note: bytes | None = None
        self.noted = 0
        self._owing = owing  # the cohorts owed a note (Cohorts.owing)

    @property
    def note(self) -> bytes | None:
        return self._note

    @note.setter
    def note(self, note: bytes | None) -> None:
        self._note = note
        if note is None:
            self._owing.discard(self)
        else:
            self._owing.add(self)

    @property
    def key(self) -> CohortKey:
        return (self.fmt.name, self.prepare, self.symbols)

    @property
    def kind(self) -> Kind:
        return (self.fmt.name, self.prepare)


def _picker(symbols: tuple[str, ...]) -> Callable[[dict[str, bytes]], Sequence[bytes]]:
    get = itemgetter(*symbols)
    if len(symbols) == 1:
        return lambda texts: (get(texts),)
    return cast(Callable[[dict[str, bytes]], Sequence[bytes]], get)


class Cohorts:
    """Every cohort, by key and by symbol watched, and how many outboxes watch each symbol."""

    def __init__(self) -> None:
        self.cohorts: dict[CohortKey, Cohort] = {}
        self.by_symbol: dict[str, set[Cohort]] = {}
        self.by_kind: dict[Kind, dict[str, set[Cohort]]] = {}  # by_symbol, per kind
        self.owing: set[Cohort] = set()  # those owed a freshness note (Cohort.note)
        self.counts: dict[str, int] = {}  # symbol -> watchers, kept as members come and go

    def regroup(self, outbox: Outbox) -> None:
        """Put `outbox` in the cohort of its current symbol set (none when it watches nothing)."""
        sink = outbox.sink
        key = (outbox.fmt.name, sink.prepare if sink else None, tuple(sorted(outbox.symbols)))
        old = cast("Cohort | None", outbox.cohort)
        if old is not None:
            if old.key == key:
                return
            old.members.discard(outbox)
            self._count(old.symbols, -1)
            if not old.members:
                self._drop(old)
        outbox.cohort = None
        if not outbox.symbols:
            return
        cohort = self.cohorts.get(key)
        if cohort is None:
            cohort = self.cohorts[key] = Cohort(outbox.fmt, key[1], key[2], self.owing)
            of_kind = self.by_kind.setdefault(cohort.kind, {})
            for symbol in cohort.symbols:
                self.by_symbol.setdefault(symbol, set()).add(cohort)
                of_kind.setdefault(symbol, set()).add(cohort)
        cohort.members.add(outbox)
        outbox.cohort = cohort
        self._count(cohort.symbols, 1)

    def _count(self, symbols: tuple[str, ...], delta: int) -> None:
        counts = self.counts
        for symbol in symbols:
            count = counts[symbol] = counts.get(symbol, 0) + delta
            if not count:
                del counts[symbol]

    def _drop(self, cohort: Cohort) -> None:
        del self.cohorts[cohort.key]
        self.owing.discard(cohort)
        of_kind = self.by_kind[cohort.kind]
        for by_symbol in (self.by_symbol, of_kind):
            for symbol in cohort.symbols:
                cohorts = by_symbol[symbol]
                cohorts.discard(cohort)
                if not cohorts:
                    del by_symbol[symbol]
        if not of_kind:
            del self.by_kind[cohort.kind]

    def owed_notes(self) -> list[Cohort]:
        """The cohorts owed a freshness note (Cohort.note), copied: sending one takes its cohort
        out of `owing`."""
        return list(self.owing)
