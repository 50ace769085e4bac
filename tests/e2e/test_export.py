"""GET /watchlist.csv over real HTTP (uvicorn): the same decimals /api/quotes gives, as a download.

A replay recording holds the prices still, so the CSV and the API can be compared exactly.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import httpx
import orjson
import pytest

from app.export import HEADER
from tests.e2e.conftest import serve
from tests.support import AppServer, wait_for

T0 = 1_736_935_140_000
RECORDS = [
    {"t": T0, "symbol": "AAPL", "price": "237.8800", "prev_close": "233.28", "currency": "USD",
     "exchange": "NASDAQ", "name": "@Apple Inc", "market_open": True},
    {"t": T0, "symbol": "RELIANCE", "price": "1269.74", "prev_close": "1300.10",
     "currency": "INR", "exchange": "NSE", "name": "Reliance Industries Ltd"},
]  # fmt: skip


@pytest.fixture(scope="module")
def app_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    recording = tmp_path_factory.mktemp("replay") / "recording.jsonl"
    recording.write_bytes(b"\n".join(orjson.dumps(r) for r in RECORDS))
    yield from serve({"FEEDS": "replay", "REPLAY_FILE": str(recording)})


def test_the_csv_download_carries_the_apis_exact_decimals(app_server: AppServer) -> None:
    cookies = {"watchlist": "RELIANCE,AAPL"}
    with httpx.Client(base_url=app_server.base, timeout=10, cookies=cookies) as http:

        def priced() -> bool:
            body = http.get("/api/quotes", params={"symbols": "RELIANCE,AAPL"}).json()
            return not body["missing"]

        wait_for(priced, 10, "both symbols priced")
        api = {
            q["symbol"]: q
            for q in http.get("/api/quotes", params={"symbols": "RELIANCE,AAPL"}).json()["quotes"]
        }
        response = http.get("/watchlist.csv")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"].startswith('attachment; filename="watchlist-')
    header, *rows = csv.reader(io.StringIO(response.text, newline=""))
    assert tuple(header) == HEADER
    assert [r[0] for r in rows] == ["RELIANCE", "AAPL"]
    for row in rows:
        quote = api[row[0]]
        assert row[2:5] == [quote["price"], quote["change"], quote["change_pct"]]
    reliance, aapl = rows
    assert reliance[2:4] == ["1269.74", "-30.36"]
    assert aapl[1] == "'@Apple Inc" and aapl[2] == "237.8800"
    assert reliance[8] == "2025-01-15T15:29:00.000+05:30"
    assert aapl[8] == "2025-01-15T04:59:00.000-05:00"
