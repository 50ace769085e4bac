"""GET /watchlist.csv in-process: the cookie's watchlist as a CSV attachment, from the live store.

A replay recording gives fixed quotes with the names and decimals a test needs (a provider's
formula-like name, trailing zeros, a negative change) and a symbol priced only an hour into the
recording, so unpriced while the test runs.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from app.export import HEADER
from tests.fast.inprocess import wait_priced
from tests.unit.asgi import TestClient, app_client

T0 = 1_736_935_140_000  # 2025-01-15T09:59:00Z
RECORDS = [
    {"t": T0, "symbol": "AAPL", "price": "237.88000", "prev_close": "240.00", "currency": "USD",
     "exchange": "NASDAQ", "name": "Apple Inc", "market_open": True},
    {"t": T0, "symbol": "TCS", "price": "4100.05", "prev_close": "4000", "currency": "INR",
     "exchange": "NSE", "name": '=HYPERLINK("http://evil.example","Tata")', "market_open": True},
    {"t": T0 + 3_600_000, "symbol": "MSFT", "price": "426.63", "currency": "USD",
     "exchange": "NASDAQ", "name": "Microsoft Corporation"},
]  # fmt: skip


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    recording = tmp_path / "recording.jsonl"
    recording.write_bytes(b"\n".join(orjson.dumps(r) for r in RECORDS))
    env = {
        "FEEDS": "replay",
        "REPLAY_FILE": str(recording),
        "MAX_SYMBOLS_PER_CONNECTION": "2",
        "DEFAULT_WATCHLIST": "AAPL",
    }
    with app_client(env) as client:
        wait_priced(client, "AAPL", "TCS")
        yield client


def rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def test_the_watchlist_downloads_as_a_dated_csv_attachment(client: TestClient) -> None:
    client.cookies.set("watchlist", "TCS,AAPL")
    response = client.get("/watchlist.csv")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    disposition = response.headers["content-disposition"]
    found = re.fullmatch(r'attachment; filename="watchlist-(\d{4}-\d\d-\d\d)\.csv"', disposition)
    assert found is not None, disposition
    datetime.strptime(found.group(1), "%Y-%m-%d")
    assert response.headers["cache-control"] == "no-store"
    header, tcs, aapl = rows(response.text)
    assert tuple(header) == HEADER
    # The quote's decimals exactly, as the recording gave them (trailing zeros kept).
    assert aapl[:8] == [
        "AAPL", "Apple Inc", "237.88000", "-2.12000", "-0.8833", "USD", "NASDAQ", "replay",
    ]  # fmt: skip
    assert Decimal(aapl[2]) == Decimal("237.88")
    assert aapl[8] == "2025-01-15T04:59:00.000-05:00"  # New York time, with its offset
    assert tcs[8] == "2025-01-15T15:29:00.000+05:30"  # India's
    age = int(aapl[9])
    assert age >= (int(datetime.now().timestamp() * 1000) - T0) // 1000 - 5
    # The provider's name cannot run as a formula in a spreadsheet.
    assert tcs[1] == '\'=HYPERLINK("http://evil.example","Tata")'
    assert tcs[2:4] == ["4100.05", "100.05"]


def test_an_unpriced_symbol_has_its_row_with_empty_price_fields(client: TestClient) -> None:
    client.cookies.set("watchlist", "MSFT,AAPL")
    header, msft, aapl = rows(client.get("/watchlist.csv").text)
    assert msft == ["MSFT"] + [""] * 9
    assert aapl[2] == "237.88000"


def test_the_export_is_bounded_like_the_page(client: TestClient) -> None:
    # A forged cookie longer than MAX_SYMBOLS_PER_CONNECTION (2) is cut there, unread.
    client.cookies.set("watchlist", ",".join(["AAPL", "TCS"] * 500))
    assert [r[0] for r in rows(client.get("/watchlist.csv").text)] == ["symbol", "AAPL", "TCS"]
    client.cookies.set("watchlist", "")
    assert rows(client.get("/watchlist.csv").text) == [list(HEADER)]


def test_the_dashboard_links_the_download(client: TestClient) -> None:
    html = client.get("/").text
    assert '<a href="/watchlist.csv" download>Download CSV</a>' in html
