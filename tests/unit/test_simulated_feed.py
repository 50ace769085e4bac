from __future__ import annotations

from decimal import Decimal

from app.feeds.simulated import SimulatedFeed
from app.feeds.universe import BY_SYMBOL

SYMBOLS = ["RELIANCE", "TCS", "NIFTY 50", "AAPL", "MSFT"]


async def walk(feed: SimulatedFeed, symbols: list[str], steps: int) -> list[list[Decimal]]:
    prices = []
    for _ in range(steps):
        result = await feed.fetch(symbols)
        prices.append([q.price for q in result.quotes])
    return prices


async def test_same_seed_same_prices() -> None:
    a = await walk(SimulatedFeed(seed=1, clock=lambda: 1.0), SYMBOLS, 50)
    b = await walk(SimulatedFeed(seed=1, clock=lambda: 1.0), SYMBOLS, 50)
    c = await walk(SimulatedFeed(seed=2, clock=lambda: 1.0), SYMBOLS, 50)
    assert a == b
    assert a != c


async def test_a_symbols_walk_does_not_depend_on_its_neighbours() -> None:
    alone = await walk(SimulatedFeed(seed=5), ["TCS"], 30)
    crowded = await walk(SimulatedFeed(seed=5), ["AAPL", "TCS", "INFY"], 30)
    assert [row[0] for row in alone] == [row[1] for row in crowded]


async def test_day_fields_stay_consistent_and_prices_move() -> None:
    feed = SimulatedFeed(seed=3)
    seen: dict[str, set[Decimal]] = {s: set() for s in SYMBOLS}
    last_volume: dict[str, int | None] = {}
    for _ in range(300):
        for q in (await feed.fetch(SYMBOLS)).quotes:
            inst = BY_SYMBOL[q.symbol]
            assert q.low <= q.price <= q.high
            assert q.low <= q.open <= q.high
            assert q.change == q.price - q.prev_close
            assert q.price % inst.tick == 0
            assert q.currency == inst.currency and q.source == "simulated"
            # stays near its reference level over a short session
            assert abs(q.price / inst.reference - 1) < Decimal("0.2")
            if inst.daily_volume:
                assert q.volume is not None and q.volume >= (last_volume.get(q.symbol) or 0)
            else:
                assert q.volume is None
            last_volume[q.symbol] = q.volume
            seen[q.symbol].add(q.price)
    assert all(len(prices) > 5 for prices in seen.values())


async def test_unknown_symbols_are_rejected_not_invented() -> None:
    feed = SimulatedFeed(seed=1)
    result = await feed.fetch(["TCS", "NOPE"])
    assert [q.symbol for q in result.quotes] == ["TCS"]
    assert "NOPE" in result.rejected
    assert feed.check_symbol("NOPE") is not None
    assert feed.check_symbol("TCS") is None
