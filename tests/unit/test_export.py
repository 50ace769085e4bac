"""The watchlist's CSV (app.export): exact decimals, the exchange's offset, formula-safe text."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal

from app.export import HEADER, filename, text_cell, watchlist_csv
from tests.unit.test_models import make_quote

NOW_MS = 1_700_000_042_500  # 42.5 s after make_quote's source_time


def parse(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def test_prices_are_the_quotes_decimals_written_out_never_floats() -> None:
    quote = make_quote(
        price=Decimal("0.10000000000000000555"),
        change=Decimal("-1E-8"),
        change_pct=Decimal("-0.390"),
    )
    header, row = parse(watchlist_csv([("TCS", quote)], NOW_MS))
    assert tuple(header) == HEADER
    assert row[2:5] == ["0.10000000000000000555", "-0.00000001", "-0.390"]
    assert [Decimal(cell) for cell in row[2:5]] == [quote.price, quote.change, quote.change_pct]


def test_source_time_has_the_exchanges_offset_and_age_is_whole_seconds() -> None:
    nse = make_quote(exchange="NSE")
    nyse = make_quote(symbol="AAPL", exchange="NASDAQ")
    sim = make_quote(symbol="X", exchange="SIM")
    rows = parse(watchlist_csv([("TCS", nse), ("AAPL", nyse), ("X", sim)], NOW_MS))[1:]
    # 1_700_000_000_000 ms is 2023-11-14T22:13:20Z.
    assert [r[8] for r in rows] == [
        "2023-11-15T03:43:20.000+05:30",
        "2023-11-14T17:13:20.000-05:00",
        "2023-11-14T22:13:20.000+00:00",
    ]
    moment = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert all(datetime.fromisoformat(r[8]) == moment for r in rows)
    assert [r[9] for r in rows] == ["42", "42", "42"]
    future = make_quote(source_time=NOW_MS + 5000)  # a provider's clock ahead of ours
    assert parse(watchlist_csv([("TCS", future)], NOW_MS))[1][9] == "0"


def test_formula_like_text_is_neutralized_numbers_keep_their_sign() -> None:
    evil = make_quote(
        name='=HYPERLINK("http://evil.example","click")',
        source="@src",
        currency="+INR",
        exchange="-NSE",
        change=Decimal("-12.30"),
    )
    row = parse(watchlist_csv([("TCS", evil)], NOW_MS))[1]
    assert row[1] == '\'=HYPERLINK("http://evil.example","click")'
    assert (row[5], row[6], row[7]) == ("'+INR", "'-NSE", "'@src")
    assert row[3] == "-12.30"  # a number, not text
    assert [text_cell(v) for v in ("\tx", "\rx", "Tata", "")] == ["'\tx", "'\rx", "Tata", ""]


def test_unpriced_symbols_keep_their_row_with_empty_fields() -> None:
    text = watchlist_csv([("NIFTY 50", None), ("TCS", make_quote())], NOW_MS)
    assert text.startswith("symbol,name,price,change,change_pct,currency,exchange,source,")
    assert text.endswith("\r\n") and "\r\n" in text
    rows = parse(text)
    assert rows[1] == ["NIFTY 50"] + [""] * 9
    assert rows[2][:3] == ["TCS", "Tata Consultancy Services Ltd", "3150.05"]


def test_the_filename_is_dated_in_utc() -> None:
    late = datetime(2026, 12, 1, 23, 30, tzinfo=UTC)
    assert filename(late) == "watchlist-2026-12-01.csv"
