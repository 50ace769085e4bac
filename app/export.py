"""The watchlist as CSV (`GET /watchlist.csv`): one row per symbol, in the watchlist's order.

Prices are the quote's own decimals written out in full (`format(d, "f")`: exact, never a float,
never an exponent); the source time is ISO 8601 in the exchange's zone with its offset (UTC for an
exchange without a calendar, such as the simulated feed's); the age is whole seconds. A symbol
without a price (pending, or refused by the provider) keeps its row with empty price fields.

Spreadsheets run a cell that starts with `=`, `+`, `-` or `@` as a formula (CSV injection), and the
text cells (a company's name above all) come from the providers: such a text cell is prefixed with
`'`, which spreadsheets show as text. The numeric cells are formatted here from Decimals and ints,
so they are numbers, and a negative change keeps its minus sign.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal

from app import sessions
from app.models import Quote

HEADER = (
    "symbol",
    "name",
    "price",
    "change",
    "change_pct",
    "currency",
    "exchange",
    "source",
    "source_time",
    "age_seconds",
)
# A spreadsheet treats a cell starting with one of these as a formula (tab and CR too, per OWASP).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def text_cell(value: str) -> str:
    """A text cell a spreadsheet shows as text, never runs."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def decimal_cell(value: Decimal) -> str:
    return format(value, "f")


def source_time(quote: Quote) -> str:
    """When the price was current, ISO 8601 with the offset of the exchange's zone."""
    zone = sessions.zone(quote.exchange) or UTC
    moment = datetime.fromtimestamp(quote.source_time / 1000, zone)
    return moment.isoformat(timespec="milliseconds")


def row(symbol: str, quote: Quote | None, now_ms: int) -> list[str]:
    if quote is None:
        return [text_cell(symbol)] + [""] * (len(HEADER) - 1)
    age = max(0, (now_ms - quote.source_time) // 1000)
    return [
        text_cell(symbol),
        text_cell(quote.name),
        decimal_cell(quote.price),
        decimal_cell(quote.change),
        decimal_cell(quote.change_pct),
        text_cell(quote.currency),
        text_cell(quote.exchange),
        text_cell(quote.source),
        source_time(quote),
        str(age),
    ]


def watchlist_csv(rows: Iterable[tuple[str, Quote | None]], now_ms: int) -> str:
    """The CSV text (RFC 4180: CRLF line ends, quoted where needed), header first."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADER)
    for symbol, quote in rows:
        writer.writerow(row(symbol, quote, now_ms))
    return out.getvalue()


def filename(now: datetime) -> str:
    """`watchlist-2026-12-01.csv`: the UTC date of the download."""
    return f"watchlist-{now.astimezone(UTC):%Y-%m-%d}.csv"
