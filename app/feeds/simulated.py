"""A simulated feed: a seeded random walk per instrument, for demos, development and tests.

Each symbol walks on its own generator seeded from (seed, symbol), and each step has the same size
whatever the wall clock did, so a given seed yields the same prices for a symbol after the same
number of fetches, whichever other symbols were fetched alongside. The walk is pulled gently back
toward the previous close, so a long demo does not drift off to nonsense prices; open, high, low,
previous close and a growing day volume stay consistent with the price.

With `sessions` on (`SIM_SESSIONS=calendar`, the default) an instrument moves only while its
exchange is in session (app/sessions.py); outside it the quote keeps its last price and says
`market_open: false`. Each new session starts a new day: the last price becomes the previous
close, and open, high, low and volume start again. Synthetic `SIM` instruments have no exchange
calendar and trade at every hour.
"""

from __future__ import annotations

import math
import random
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from app import sessions as calendar
from app.feeds.base import FetchResult
from app.feeds.universe import Instrument, universe
from app.models import LIVE, FeedStatus, Quote

# Typical per-step move of a large-cap stock at a 2 s step: about 0.04 %.
_BASE_SIGMA = 0.0004
_REVERSION = 0.002
_TRADE_PROBABILITY = 0.8
_TWO_PLACES = Decimal("0.01")
# The one endless session of an instrument that trades at every hour (no day ever starts anew).
_EVERY_DAY = date.min


@dataclass(slots=True)
class _Walk:
    inst: Instrument
    rng: random.Random
    prev_close: Decimal
    open: Decimal
    price: Decimal
    high: Decimal
    low: Decimal
    volume: int
    # The exchange's date of the session the day's figures belong to (None: not in one yet).
    day: date | None = None


class SimulatedFeed:
    """Prices every instrument of `app.feeds.universe`; `step_seconds` scales the move size.

    `symbols` widens the market with synthetic instruments (see `universe`). `batch`, when set,
    prices at most that many of the requested symbols per fetch, round-robin, as a streaming
    provider delivers a few quotes at a time (the benchmark's stream workload). `sessions`
    makes instruments trade only in their exchange's sessions, judged at `clock`'s time.
    """

    name = "simulated"
    # check_symbol alone decides: no unknown symbol ever reaches fetch.
    authoritative_symbols = True

    def __init__(
        self,
        seed: int | None = None,
        step_seconds: float = 2.0,
        clock: Callable[[], float] = time.time,
        symbols: int | None = None,
        batch: int | None = None,
        sessions: bool = False,
    ) -> None:
        self._instruments = universe(symbols)
        self._batch = batch
        self._turn = 0
        self._seed = random.randrange(1 << 32) if seed is None else seed
        self._scale = math.sqrt(max(step_seconds, 0.05) / 2.0)
        self._clock = clock
        self._walks: dict[str, _Walk] = {}
        self._sessions = sessions

    def check_symbol(self, symbol: str) -> str | None:
        if symbol in self._instruments:
            return None
        return f"unknown symbol {symbol!r}: the simulated feed does not list it"

    def status(self) -> FeedStatus:
        return LIVE

    def refresh_interval(self, symbols: int, poll_interval: float) -> float:
        return poll_interval

    def describe(self) -> dict[str, Any]:
        return {self.name: {"seed": self._seed}}

    async def fetch(self, symbols: Sequence[str]) -> FetchResult:
        result = FetchResult()
        now_ms = int(self._clock() * 1000)
        now = datetime.fromtimestamp(now_ms / 1000, UTC)
        if self._batch is not None and len(symbols) > self._batch:
            start = self._turn % len(symbols)
            self._turn = start + self._batch
            symbols = [*symbols[start:], *symbols[:start]][: self._batch]
        for symbol in symbols:
            reason = self.check_symbol(symbol)
            if reason is not None:
                result.rejected[symbol] = reason
                continue
            inst = self._instruments[symbol]
            day = self._session_day(inst, now)
            walk = self._walks.get(symbol)
            if walk is None:
                walk = self._walks[symbol] = self._start(inst)
                walk.day = day
            elif day is not None:
                if walk.day is not None and walk.day != day:
                    self._new_day(walk)
                walk.day = day
                self._step(walk)
            result.quotes.append(self._quote(walk, now_ms, open_=day is not None))
        return result

    def _session_day(self, inst: Instrument, now: datetime) -> date | None:
        """The exchange's date while `inst` trades at `now`; None while its market is closed."""
        zone = calendar.zone(inst.exchange)
        if not self._sessions or zone is None:
            return _EVERY_DAY
        return now.astimezone(zone).date() if calendar.is_open(inst.exchange, now) else None

    def _new_day(self, walk: _Walk) -> None:
        """A new session: yesterday's last price is the previous close; the open gaps a little."""
        walk.prev_close = walk.price
        gap = walk.rng.gauss(0, 0.004 * walk.inst.vol)
        walk.open = walk.price = walk.high = walk.low = _round(
            walk.prev_close * _factor(gap), walk.inst.tick
        )
        walk.volume = 0

    def _start(self, inst: Instrument) -> _Walk:
        rng = random.Random(zlib.crc32(f"{self._seed}:{inst.symbol}".encode()))
        prev_close = _round(inst.reference * _factor(rng.gauss(0, 0.006)), inst.tick)
        open_ = _round(prev_close * _factor(rng.gauss(0, 0.004 * inst.vol)), inst.tick)
        volume = int(inst.daily_volume * rng.uniform(0.05, 0.4))
        return _Walk(inst, rng, prev_close, open_, open_, open_, open_, volume)

    def _step(self, walk: _Walk) -> None:
        rng, inst = walk.rng, walk.inst
        if rng.random() > _TRADE_PROBABILITY:
            return
        drift = -_REVERSION * float(walk.price / walk.prev_close - 1)
        move = rng.gauss(drift, _BASE_SIGMA * inst.vol * self._scale)
        walk.price = max(_round(walk.price * _factor(move), inst.tick), inst.tick)
        walk.high = max(walk.high, walk.price)
        walk.low = min(walk.low, walk.price)
        if inst.daily_volume:
            # A 6.25 h session has about 11,250 two-second steps.
            walk.volume += int(
                inst.daily_volume / 11_250 * self._scale**2 * rng.lognormvariate(0, 1)
            )

    def _quote(self, walk: _Walk, now_ms: int, *, open_: bool) -> Quote:
        inst = walk.inst
        change = walk.price - walk.prev_close
        pct = (change / walk.prev_close * 100).quantize(_TWO_PLACES, ROUND_HALF_EVEN)
        return Quote(
            symbol=inst.symbol,
            price=walk.price,
            change=change,
            change_pct=pct,
            open=walk.open,
            high=walk.high,
            low=walk.low,
            prev_close=walk.prev_close,
            volume=walk.volume if inst.daily_volume else None,
            currency=inst.currency,
            exchange=inst.exchange,
            name=inst.name,
            source=self.name,
            source_time=now_ms,
            market_open=open_,
        )


def _factor(move: float) -> Decimal:
    return Decimal(1) + Decimal(repr(move))


def _round(value: Decimal, tick: Decimal) -> Decimal:
    return (value / tick).quantize(Decimal(1), ROUND_HALF_EVEN) * tick
