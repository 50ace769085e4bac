from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from app.feeds.simulated import SimulatedFeed
from app.feeds.universe import BY_SYMBOL

IST = ZoneInfo("Asia/Kolkata")
ET = ZoneInfo("America/New_York")
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


class Clock:
    """A settable clock: the tests decide the hour, never today's date."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at.timestamp()


async def test_with_sessions_only_markets_in_session_move() -> None:
    # 17:53 EST on a Tuesday is 04:23 IST on Wednesday: both markets are shut.
    clock = Clock(datetime(2026, 12, 1, 17, 53, tzinfo=ET))
    feed = SimulatedFeed(seed=4, clock=clock, sessions=True)
    shut = await walk(feed, ["RELIANCE", "AAPL", "SPX"], 40)
    assert all(row == shut[0] for row in shut)
    quotes = (await feed.fetch(["RELIANCE", "AAPL", "SPX", "SIM001"])).quotes
    assert [q.market_open for q in quotes] == [False, False, False]  # no SIM001 in this market
    # NSE opens at 09:15 IST; New York is still shut.
    clock.at = datetime(2026, 12, 2, 9, 20, tzinfo=IST)
    moving = await walk(feed, ["RELIANCE", "AAPL"], 40)
    assert len({row[0] for row in moving}) > 5
    assert {row[1] for row in moving} == {shut[0][1]}
    states = {q.symbol: q.market_open for q in (await feed.fetch(["RELIANCE", "AAPL"])).quotes}
    assert states == {"RELIANCE": True, "AAPL": False}


async def test_synthetic_instruments_trade_at_every_hour() -> None:
    clock = Clock(datetime(2026, 12, 5, 3, 0, tzinfo=UTC))  # a Saturday
    feed = SimulatedFeed(seed=4, clock=clock, sessions=True, symbols=60)
    prices = await walk(feed, ["SIM001"], 40)
    assert len({row[0] for row in prices}) > 5
    assert (await feed.fetch(["SIM001"])).quotes[0].market_open is True


async def test_a_new_session_starts_a_new_day() -> None:
    clock = Clock(datetime(2026, 12, 1, 10, 0, tzinfo=IST))
    feed = SimulatedFeed(seed=6, clock=clock, sessions=True)
    await walk(feed, ["TCS"], 100)
    close = (await feed.fetch(["TCS"])).quotes[0]
    clock.at = datetime(2026, 12, 1, 16, 0, tzinfo=IST)
    after_hours = (await feed.fetch(["TCS"])).quotes[0]
    assert after_hours.price == close.price and after_hours.market_open is False
    clock.at = datetime(2026, 12, 2, 9, 15, tzinfo=IST)
    quotes = [q for _ in range(5) for q in (await feed.fetch(["TCS"])).quotes]
    assert all(q.prev_close == close.price and q.market_open for q in quotes)
    assert close.volume is not None and quotes[0].volume is not None
    assert quotes[0].volume < close.volume


async def test_without_sessions_every_hour_trades() -> None:
    clock = Clock(datetime(2026, 12, 6, 3, 0, tzinfo=UTC))  # a Sunday
    prices = await walk(SimulatedFeed(seed=4, clock=clock), ["RELIANCE"], 40)
    assert len({row[0] for row in prices}) > 5
