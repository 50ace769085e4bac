"""The stock page's chart as server-rendered SVG geometry (the page's script redraws it live)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

WIDTH, HEIGHT, PAD = 800, 260, 12


@dataclass(frozen=True, slots=True)
class ChartGeometry:
    polyline: str  # the `points` attribute of the line
    dot: tuple[float, float]  # the last point
    prev_y: float  # where the previous close sits


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
    return ChartGeometry(line, (round(x(t1), 1), round(y(prices[-1]), 1)), round(prev_y, 1))
