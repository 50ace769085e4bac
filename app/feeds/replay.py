"""Replay: recorded quotes played back at recorded or accelerated speed (`FEEDS=replay`).

For demos and deterministic tests. `REPLAY_FILE` is JSONL (one object per line) or CSV (a header
row), with these fields; only `t`, `symbol` and `price` are required:

    t            epoch milliseconds (or an ISO 8601 time with a zone)
    symbol       as clients subscribe to it
    price, change, change_pct, open, high, low, prev_close    decimals (strings or numbers)
    volume, currency, exchange, name, market_open

Playback starts at the first fetch: after `s` seconds the feed answers, per symbol, the last record
at or before `first t + s * REPLAY_SPEED * 1000`; at the end of the recording it starts over.
Quotes say `source: "replay"` and keep their recorded `source_time`: a replay never passes for
live data. Missing change figures are derived from `prev_close`, as with live providers.
"""

from __future__ import annotations

import bisect
import csv
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from app.feeds.base import FetchResult
from app.feeds.http import dec, derive, or_price, volume_of
from app.feeds.universe import BY_SYMBOL
from app.models import LIVE, FeedStatus, Quote
from app.symbols import InvalidSymbol, normalize_symbol


class ReplayFileError(ValueError):
    """The recording cannot be played; the message names the file and line."""


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        if path.suffix.lower() == ".csv":
            for number, row in enumerate(csv.DictReader(handle), start=2):
                yield number, {k.strip(): v for k, v in row.items() if k and v not in (None, "")}
            return
        for number, line in enumerate(handle, start=1):
            if line.strip() and not line.lstrip().startswith("#"):
                try:
                    obj = orjson.loads(line)
                except orjson.JSONDecodeError:
                    raise ReplayFileError(f"{path}:{number}: not JSON") from None
                if not isinstance(obj, dict):
                    raise ReplayFileError(f"{path}:{number}: not a JSON object")
                yield number, obj


def _time_ms(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError("time without a zone")
    return int(moment.timestamp() * 1000)


def _record(row: dict[str, Any]) -> Quote:
    symbol = normalize_symbol(str(row["symbol"]))
    price = dec(row.get("price"))
    if price is None:
        raise ValueError("price is missing or not a number")
    change, pct, prev = derive(
        price, dec(row.get("prev_close")), dec(row.get("change")), dec(row.get("change_pct"))
    )
    inst = BY_SYMBOL.get(symbol)
    market_open = row.get("market_open")
    if isinstance(market_open, str):
        market_open = {"true": True, "false": False}.get(market_open.strip().lower())
    return Quote(
        symbol=symbol,
        price=price,
        change=change,
        change_pct=pct,
        open=or_price(row.get("open"), price),
        high=or_price(row.get("high"), price),
        low=or_price(row.get("low"), price),
        prev_close=prev,
        volume=volume_of(row.get("volume")),
        currency=str(row.get("currency") or (inst.currency if inst else "")),
        exchange=str(row.get("exchange") or (inst.exchange if inst else "")),
        name=str(row.get("name") or (inst.name if inst else symbol)),
        source="replay",
        source_time=_time_ms(row["t"]),
        market_open=market_open if isinstance(market_open, bool) else None,
    )


def load(path: str | Path) -> dict[str, list[Quote]]:
    """Per symbol, its records in time order. Raises ReplayFileError naming the bad line."""
    file = Path(path)
    tracks: dict[str, list[Quote]] = {}
    try:
        for number, row in _rows(file):
            try:
                quote = _record(row)
            except (KeyError, ValueError, InvalidSymbol) as exc:
                raise ReplayFileError(f"{file}:{number}: {exc}") from None
            tracks.setdefault(quote.symbol, []).append(quote)
    except OSError as exc:
        raise ReplayFileError(f"{file}: {exc.strerror}") from None
    if not tracks:
        raise ReplayFileError(f"{file}: no records")
    for track in tracks.values():
        track.sort(key=lambda q: q.source_time)
    return tracks


class ReplayFeed:
    name = "replay"
    # check_symbol alone decides: no unknown symbol ever reaches fetch.
    authoritative_symbols = True

    def __init__(
        self,
        tracks: dict[str, list[Quote]],
        speed: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tracks = tracks
        self._times = {s: [q.source_time for q in track] for s, track in tracks.items()}
        self._speed = speed
        self._clock = clock
        self._first = min(t[0] for t in self._times.values())
        self._span = max(t[-1] for t in self._times.values()) - self._first + 1
        self._started: float | None = None

    def check_symbol(self, symbol: str) -> str | None:
        if symbol in self._tracks:
            return None
        return f"unknown symbol {symbol!r}: the replay recording does not hold it"

    def status(self) -> FeedStatus:
        return LIVE

    def refresh_interval(self, symbols: int, poll_interval: float) -> float:
        return poll_interval

    def describe(self) -> dict[str, Any]:
        return {self.name: {"symbols": len(self._tracks), "speed": self._speed}}

    def position(self) -> int:
        """The recording time (ms) being played now; starts with the first fetch and loops."""
        now = self._clock()
        if self._started is None:
            self._started = now
        elapsed = int((now - self._started) * self._speed * 1000)
        return self._first + elapsed % self._span

    async def fetch(self, symbols: Sequence[str]) -> FetchResult:
        result = FetchResult()
        at = self.position()
        for symbol in symbols:
            times = self._times.get(symbol)
            if times is None:
                result.rejected[symbol] = f"{symbol}: not in the replay recording"
                continue
            index = bisect.bisect_right(times, at) - 1
            if index >= 0:
                result.quotes.append(self._tracks[symbol][index])
        return result
