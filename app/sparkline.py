"""Sparklines: each watchlist and market-board row's small intraday line, as server-rendered SVG.

Drawn from the stock chart's shared history (app/history.py), so a page shows them before any
script runs; the page's script (static/js/sparkline.js) extends them as live rows arrive. The
live rows themselves never carry one: the sparkline is a page-only cell of `_quote_row.html`
(rendered when the page passes `sparks`), which the script's cell-by-cell merge leaves in place,
so a WebSocket or long-poll frame costs exactly what it did without sparklines.

Bounded cost: a page samples at most `MAX_POINTS` points per row, for all its rows in one round
trip to the store (`History.samples`), and the SVG is one polyline and a dot. The SVG is the
data: the script recovers the points from the polyline and the scale (`data-lo`, `data-hi`,
`data-t0`, `data-t1`), so the page carries no second copy of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from app import sessions
from app.history import History, Point
from app.models import Quote

MAX_POINTS = 60
# The SVG's own units (viewBox); CSS sizes it (smaller on phones, keeping the aspect).
WIDTH, HEIGHT, PAD = 80, 24, 2


@dataclass(frozen=True, slots=True)
class Sparkline:
    polyline: str  # the `points` attribute: x by time, y by price (the high at the top)
    dot: tuple[float, float]  # the last point
    direction: str  # "up", "down" or "flat": the last price against the first
    label: str  # for people: "TCS today: from 3,120.00 to 3,150.00, up 0.96 %"
    day: str  # "today", or the day of the line ("on Fri 28 Nov") when it is not today's
    first: str  # the first price, exact (the label's "from")
    lo: float  # the price scale: the bottom and top of the box's inner height
    hi: float
    t0: int  # the time scale (ms since the Unix epoch): left and right of the inner width
    t1: int


def downsample(points: Sequence[Point], limit: int = MAX_POINTS) -> list[Point]:
    """At most `limit` (>= 2) points, evenly spread by position, the first and the last kept."""
    if limit < 2:
        raise ValueError(f"a sparkline needs at least 2 points, not {limit}")
    n = len(points)
    if n <= limit:
        return list(points)
    return [points[i * (n - 1) // (limit - 1)] for i in range(limit)]


def _number(value: Decimal) -> str:
    return f"{value:,.2f}"


def _day(last_ms: int, exchange: str, now: datetime | None) -> str:
    zone = sessions.zone(exchange) or UTC
    at = datetime.fromtimestamp(last_ms / 1000, zone)
    today = (now or datetime.now(UTC)).astimezone(zone).date()
    return "today" if at.date() == today else at.strftime("on %a %d %b")


def label(symbol: str, day: str, first: Decimal, last: Decimal, count: int) -> str:
    """What the sparkline says to a screen reader (and in its tooltip)."""
    if count == 1:
        return f"{symbol} {day}: {_number(last)}, the only price so far"
    move = last - first
    if move == 0:
        return f"{symbol} {day}: from {_number(first)} to {_number(last)}, unchanged"
    word = "up" if move > 0 else "down"
    if first == 0:
        return f"{symbol} {day}: from {_number(first)} to {_number(last)}, {word}"
    pct = abs(move) / abs(first) * 100
    return f"{symbol} {day}: from {_number(first)} to {_number(last)}, {word} {pct:.2f} %"


def build(
    symbol: str,
    points: Sequence[Point],
    quote: Quote | None = None,
    *,
    now: datetime | None = None,
) -> Sparkline | None:
    """The row's sparkline from its history and latest quote (appended when newer than the
    history's last point); None when there is neither (the row shows no sparkline)."""
    line = list(points)
    if quote is not None and (not line or line[-1][0] < quote.source_time):
        line.append((quote.source_time, quote.price))
    if not line:
        return None
    line = downsample(line)
    prices = [float(p) for _, p in line]
    lo, hi = min(prices), max(prices)
    if hi - lo < 1e-9 * max(abs(hi), 1.0):  # flat: a level line across the middle
        lo, hi = lo - 1, hi + 1
    t0, t1 = line[0][0], line[-1][0]
    # x by time, y by price (the high at the top), inlined: this runs for every point of every
    # row of a page.
    x_scale = (WIDTH - 2 * PAD) / max(t1 - t0, 1)
    y_scale = (HEIGHT - 2 * PAD) / (hi - lo)
    if len(line) == 1:
        coords = [f"{WIDTH - PAD:.1f},{PAD + (hi - prices[0]) * y_scale:.1f}"]
    else:
        coords = [
            f"{PAD + (t - t0) * x_scale:.1f},{PAD + (hi - p) * y_scale:.1f}"
            for (t, _), p in zip(line, prices, strict=True)
        ]
    dot_x, dot_y = coords[-1].split(",")
    first, last = line[0][1], line[-1][1]
    day = _day(t1, quote.exchange if quote is not None else "", now)
    return Sparkline(
        polyline=" ".join(coords),
        dot=(float(dot_x), float(dot_y)),
        direction="up" if last > first else "down" if last < first else "flat",
        label=label(symbol, day, first, last, len(line)),
        day=day,
        first=str(first),
        lo=lo,
        hi=hi,
        t0=t0,
        t1=t1,
    )


async def sparklines(
    history: History, symbols: Sequence[str], quotes: Mapping[str, Quote]
) -> dict[str, Sparkline | None]:
    """Every row's sparkline for a page, from one sampled read of the shared history."""
    lines = await history.samples(symbols, MAX_POINTS)
    return {s: build(s, lines.get(s, []), quotes.get(s)) for s in symbols}
