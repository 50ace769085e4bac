"""The app (`python -m app`) on FEEDS=nse,alphavantage against the fake NSE website: keyless NSE
prices, Alpha Vantage's end-of-day BSE close while NSE blocks us, the calendar's market flag."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.provider import KEYS, FakeProviders, fake, fake_server
from tests.support import AppServer, eventually

__all__ = ["fake", "fake_server"]


@pytest.fixture
def app(fake: FakeProviders) -> Iterator[AppServer]:
    server = AppServer({
        "FEEDS": "nse,alphavantage", "FETCH_INTERVAL": "1", "NSE_BASE_URL": fake.url("nse"),
        "ALPHAVANTAGE_API_KEY": KEYS["av"], "ALPHAVANTAGE_BASE_URL": fake.url("av"),
        "NSE_CALLS_PER_MINUTE": "100000", "ALPHAVANTAGE_CALLS_PER_MINUTE": "100000",
        "ALPHAVANTAGE_CALLS_PER_DAY": "0",
        "BOARD_SYMBOLS": "RELIANCE,NIFTY 50", "DEFAULT_WATCHLIST": "RELIANCE,NIFTY 50",
        "BREAKER_FAIL_MAX": "2", "BREAKER_RESET_TIMEOUT": "600",
    })  # fmt: skip
    server.start()
    yield server
    server.stop()


async def test_nse_prices_then_alpha_vantage_end_of_day_while_blocked(
    fake: FakeProviders, app: AppServer
) -> None:
    async with httpx.AsyncClient(base_url=app.base) as http:

        async def quotes(source: str) -> dict[str, Any] | None:
            body = (await http.get("/api/quotes", params={"symbols": "RELIANCE,NIFTY 50"})).json()
            found = {q["symbol"]: q for q in body["quotes"]}
            reliance = found.get("RELIANCE")
            return found if reliance is not None and reliance["source"] == source else None

        found = await eventually(lambda: quotes("nse"), 15, "NSE prices")
        assert found["RELIANCE"]["exchange"] == "NSE" and found["NIFTY 50"]["source"] == "nse"
        # NSE sends no market flag: the calendar's answer is there (open or closed, not null).
        assert isinstance(found["RELIANCE"]["market_open"], bool)
        assert fake.state.calls["nse_home"] >= 1

        fake.state.mode["nse"] = "akamai"
        found = await eventually(lambda: quotes("alphavantage"), 20, "the failover to BSE")
        assert found["RELIANCE"]["exchange"] == "BSE"
        assert "symbol=RELIANCE.BSE" in " ".join(fake.state.seen_urls)
        page = (await http.get("/stock/RELIANCE")).text
        assert ">End of day</span>" in page
        # NIFTY 50 has no other source: it keeps its last NSE price.
        assert found["NIFTY 50"]["source"] == "nse"
