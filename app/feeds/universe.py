"""Reference data: real instruments at realistic price levels.

The simulated feed walks from it, the replay feed fills in names from it, and the real adapters
read exchanges and names from it (Twelve Data's `:NSE` suffix, the US-only checks of Finnhub and
Alpha Vantage). Prices are rough late-2025 levels, good enough that the board looks like a
market; they are the anchor of the random walk, not market data. `tick` is the exchange's
minimum price step.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class Instrument:
    symbol: str
    name: str
    exchange: str
    currency: str
    reference: Decimal
    tick: Decimal
    # Typical shares traded per day; 0 for an index (no volume).
    daily_volume: int
    # Relative volatility: 1.0 is a typical large-cap stock.
    vol: float = 1.0


def _nse(symbol: str, name: str, ref: str, volume: int, vol: float = 1.0) -> Instrument:
    return Instrument(symbol, name, "NSE", "INR", Decimal(ref), Decimal("0.05"), volume, vol)


def _us(
    symbol: str, name: str, ref: str, exchange: str, volume: int, vol: float = 1.0
) -> Instrument:
    return Instrument(symbol, name, exchange, "USD", Decimal(ref), Decimal("0.01"), volume, vol)


def _index(symbol: str, name: str, ref: str, exchange: str, currency: str) -> Instrument:
    return Instrument(symbol, name, exchange, currency, Decimal(ref), Decimal("0.01"), 0, 0.7)


INSTRUMENTS: tuple[Instrument, ...] = (
    _index("NIFTY 50", "Nifty 50 Index", "25900.00", "NSE", "INR"),
    _index("NIFTY BANK", "Nifty Bank Index", "58100.00", "NSE", "INR"),
    _index("SENSEX", "S&P BSE Sensex", "84500.00", "BSE", "INR"),
    _nse("RELIANCE", "Reliance Industries Ltd", "1545.00", 9_800_000),
    _nse("TCS", "Tata Consultancy Services Ltd", "3150.00", 2_900_000),
    _nse("INFY", "Infosys Ltd", "1560.00", 7_100_000),
    _nse("HDFCBANK", "HDFC Bank Ltd", "995.00", 14_000_000),
    _nse("ICICIBANK", "ICICI Bank Ltd", "1380.00", 11_000_000),
    _nse("SBIN", "State Bank of India", "960.00", 12_500_000, 1.2),
    _nse("BHARTIARTL", "Bharti Airtel Ltd", "2090.00", 5_600_000),
    _nse("ITC", "ITC Ltd", "405.00", 13_000_000, 0.8),
    _nse("LT", "Larsen & Toubro Ltd", "4010.00", 2_100_000),
    _nse("HINDUNILVR", "Hindustan Unilever Ltd", "2430.00", 1_500_000, 0.8),
    _nse("KOTAKBANK", "Kotak Mahindra Bank Ltd", "2110.00", 3_800_000),
    _nse("AXISBANK", "Axis Bank Ltd", "1270.00", 7_400_000, 1.1),
    _nse("BAJFINANCE", "Bajaj Finance Ltd", "1010.00", 6_300_000, 1.3),
    _nse("MARUTI", "Maruti Suzuki India Ltd", "15900.00", 700_000),
    _nse("SUNPHARMA", "Sun Pharmaceutical Industries Ltd", "1770.00", 2_600_000),
    _nse("WIPRO", "Wipro Ltd", "248.00", 9_000_000),
    _nse("HCLTECH", "HCL Technologies Ltd", "1610.00", 3_300_000),
    _nse("ASIANPAINT", "Asian Paints Ltd", "2870.00", 1_200_000, 0.9),
    _nse("M&M", "Mahindra & Mahindra Ltd", "3680.00", 2_500_000, 1.2),
    _nse("TITAN", "Titan Company Ltd", "3790.00", 1_100_000),
    _nse("ULTRACEMCO", "UltraTech Cement Ltd", "11800.00", 300_000),
    _nse("NESTLEIND", "Nestle India Ltd", "1260.00", 1_000_000, 0.7),
    _index("SPX", "S&P 500 Index", "6790.00", "CBOE", "USD"),
    _index("NDX", "Nasdaq 100 Index", "24900.00", "NASDAQ", "USD"),
    _index("DJI", "Dow Jones Industrial Average", "47400.00", "NYSE", "USD"),
    _us("AAPL", "Apple Inc", "276.00", "NASDAQ", 48_000_000),
    _us("MSFT", "Microsoft Corp", "485.00", "NASDAQ", 21_000_000),
    _us("GOOGL", "Alphabet Inc Class A", "318.00", "NASDAQ", 33_000_000, 1.2),
    _us("AMZN", "Amazon.com Inc", "232.00", "NASDAQ", 42_000_000, 1.2),
    _us("NVDA", "NVIDIA Corp", "178.00", "NASDAQ", 180_000_000, 1.8),
    _us("TSLA", "Tesla Inc", "425.00", "NASDAQ", 95_000_000, 2.5),
    _us("META", "Meta Platforms Inc", "640.00", "NASDAQ", 14_000_000, 1.5),
    _us("NFLX", "Netflix Inc", "108.00", "NASDAQ", 40_000_000, 1.5),
    _us("AMD", "Advanced Micro Devices Inc", "215.00", "NASDAQ", 55_000_000, 2.0),
    _us("INTC", "Intel Corp", "40.00", "NASDAQ", 90_000_000, 2.0),
    _us("JPM", "JPMorgan Chase & Co", "310.00", "NYSE", 9_000_000),
    _us("V", "Visa Inc Class A", "332.00", "NYSE", 7_000_000, 0.8),
    _us("BRK.B", "Berkshire Hathaway Inc Class B", "505.00", "NYSE", 4_500_000, 0.6),
    _us("JNJ", "Johnson & Johnson", "205.00", "NYSE", 8_000_000, 0.6),
    _us("WMT", "Walmart Inc", "108.00", "NASDAQ", 20_000_000, 0.8),
    _us("XOM", "Exxon Mobil Corp", "117.00", "NYSE", 15_000_000),
)

BY_SYMBOL: dict[str, Instrument] = {i.symbol: i for i in INSTRUMENTS}


def universe(size: int | None = None) -> dict[str, Instrument]:
    """The instruments a simulated market lists: the real ones above, then (when `size` asks for
    more) synthetic `SIM001`, `SIM002`, ... up to `size` in all, for benchmarks that need a wider
    market. `None` or a size at most the real list's length gives the real list unchanged."""
    if size is None or size <= len(INSTRUMENTS):
        return dict(BY_SYMBOL)
    out = dict(BY_SYMBOL)
    for n in range(1, size - len(INSTRUMENTS) + 1):
        symbol = f"SIM{n:03d}"
        price = Decimal(20 + (n * 37) % 980)
        out[symbol] = Instrument(
            symbol, f"Synthetic {n}", "SIM", "USD", price, Decimal("0.01"), 1_000_000
        )
    return out
