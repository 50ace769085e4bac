"""The stock page's chart as server-rendered SVG geometry (the page's script redraws it live)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from app import sessions

WIDTH, HEIGHT, PAD = 800, 260, 12


@dataclass(frozen=True, slots=True)
class ChartGeometry:
    polyline: str  # the `points` attribute of the line
    dot: tuple[float, float]  # the last point
    prev_y: float  # where the previous close sits
    # The scale's top and bottom prices, as its labels show them ("" without points).
    top: str = ""
    bottom: str = ""


def geometry(points: Sequence[tuple[int, Decimal]], prev_close: Decimal | None) -> ChartGeometry:
    """Scale `(time, price)` points into a WIDTH x HEIGHT box, previous close included."""
    if not points:
        return ChartGeometry("", (-10.0, -10.0), HEIGHT / 2)
    prices = [float(p) for _, p in points]
    bounds = prices + ([float(prev_close)] if prev_close is not None else [])
    low, high = min(bounds), max(bounds)
    if high - low < 1e-9:
        low, high = low - 1, high + 1
    t0, t1 = points[0][0], points[-1][0]
    span = max(t1 - t0, 1)

    def x(t: int) -> float:
        return WIDTH - PAD if len(points) == 1 else PAD + (t - t0) / span * (WIDTH - 2 * PAD)

    def y(price: float) -> float:
        return PAD + (1 - (price - low) / (high - low)) * (HEIGHT - 2 * PAD)

    line = " ".join(f"{x(t):.1f},{y(p):.1f}" for (t, _), p in zip(points, prices, strict=True))
    prev_y = y(float(prev_close)) if prev_close is not None else HEIGHT / 2
    dot = (round(x(t1), 1), round(y(prices[-1]), 1))
    return ChartGeometry(line, dot, round(prev_y, 1), f"{high:,.2f}", f"{low:,.2f}")


def zone_name(exchange: str) -> str:
    """The IANA zone the chart's times are shown in (the exchange's; UTC when unknown)."""
    zone = sessions.zone(exchange)
    return zone.key if zone is not None else "UTC"


# Below this span (ms) the axis shows seconds: start, middle and end could read the same minute.
SECONDS_SPAN_MS = 3 * 60 * 1000


def time_axis(points: Sequence[tuple[int, Decimal]], exchange: str) -> tuple[str, str, str]:
    """The time axis's labels (first, middle and last point's time in the exchange's zone, the
    last with the zone's name): HH:MM, or HH:MM:SS over a span too short for minutes to tell the
    three apart (static/js/chart.js does the same); empty without points."""
    if not points:
        return "", "", ""
    zone = sessions.zone(exchange) or UTC
    t0, t1 = points[0][0], points[-1][0]
    clock = "%H:%M:%S" if t1 - t0 < SECONDS_SPAN_MS else "%H:%M"

    def at(ms: float) -> str:
        return datetime.fromtimestamp(ms / 1000, zone).strftime(clock)

    return at(t0), at((t0 + t1) / 2), f"{at(t1)} {datetime.fromtimestamp(t1 / 1000, zone):%Z}"
