"""Freshness per symbol over the wire (issue 13, point 1): real uvicorn, the fake Twelve Data.

Only changed prices are published; the fetcher also says which prices its source confirmed
unchanged, and clients hear it as conflated `fresh` notes, so a quiet market is current, not
delayed, and a symbol the source stopped answering for is named stale on its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.fakes.provider import KEYS, FakeProviders, fake, fake_server
from tests.support import AppServer, quotes_in, recv_json, recv_until

__all__ = ["fake", "fake_server"]


@pytest.fixture
def app(fake: FakeProviders) -> Iterator[AppServer]:
    fake.state.frozen = {"AAPL", "MSFT"}  # a quiet market: no price ever changes
    server = AppServer({
        "FEEDS": "twelvedata", "FETCH_INTERVAL": "1",
        "TWELVEDATA_API_KEY": KEYS["td"], "TWELVEDATA_BASE_URL": fake.url("td"),
        "TWELVEDATA_CALLS_PER_MINUTE": "100000", "TWELVEDATA_CALLS_PER_DAY": "0",
        "BOARD_SYMBOLS": "AAPL,MSFT", "DEFAULT_WATCHLIST": "AAPL,MSFT", "POLL_TIMEOUT": "20",
    })  # fmt: skip
    server.start()
    yield server
    server.stop()


def is_fresh(message: dict[str, Any]) -> bool:
    return bool(message["type"] == "fresh")


async def test_a_quiet_market_is_confirmed_current_without_a_quote_per_tick(
    fake: FakeProviders, app: AppServer
) -> None:
    async with connect(app.ws_url + "?symbols=AAPL,MSFT") as ws:
        snapshot = await recv_until(ws, lambda m: m["type"] == "snapshot")
        assert {q["symbol"] for q in quotes_in(snapshot)} == {"AAPL", "MSFT"}
        first = await recv_until(ws, is_fresh)
        assert first["stale"] == {} and first["stale_after"] == 4000  # 2 x 1 s + 2 s
        assert abs(first["now"] - first["at"]) < 3000
        # Four more notes (one every other tick: half the 4 s threshold), and no quote.
        seen: list[dict[str, Any]] = []
        while len(seen) < 4:
            message = await recv_json(ws, within=5)
            assert not quotes_in(message), "an unchanged price was sent again"
            if is_fresh(message):
                seen.append(message)
        assert [n["stale"] for n in seen] == [{}] * 4
        assert seen[-1]["at"] - first["at"] >= 3000  # the notes keep moving on
        calls = fake.state.symbols_asked["AAPL"]
        assert calls >= 5  # the source really was asked each tick


async def test_a_symbol_the_source_stops_answering_for_is_named_stale_alone(
    fake: FakeProviders, app: AppServer
) -> None:
    async with connect(app.ws_url + "?symbols=AAPL,MSFT") as ws:
        await recv_until(ws, lambda m: m["type"] == "snapshot")
        note = await recv_until(ws, is_fresh)
        assert note["stale"] == {}
        fake.state.silent = {"MSFT"}  # Twelve Data leaves it out of its batch answers
        stale = await recv_until(ws, lambda m: is_fresh(m) and bool(m["stale"]), within=15)
        assert list(stale["stale"]) == ["MSFT"]
        # Named with when it was last confirmed: more than the threshold behind the note.
        assert stale["at"] - stale["stale"]["MSFT"] > stale["stale_after"]
        fake.state.silent = set()
        await recv_until(ws, lambda m: is_fresh(m) and m["stale"] == {}, within=10)


async def test_a_long_poll_that_says_how_fresh_it_is_hears_newer_notes(app: AppServer) -> None:
    async with httpx.AsyncClient(base_url=app.base, timeout=30) as http:
        first = (await http.get("/api/poll", params={"symbols": "AAPL,MSFT"})).json()
        assert {q["symbol"] for q in first["quotes"]} == {"AAPL", "MSFT"}
        note = first["fresh"]
        assert note["type"] == "fresh" and note["stale"] == {}
        params = {"symbols": "AAPL,MSFT", "cursor": first["cursor"], "as_of": str(note["at"])}
        # Nothing changes in this market: without `as_of` this poll would wait POLL_TIMEOUT
        # (20 s); with it, it answers once a note half the threshold newer is due.
        second = (await http.get("/api/poll", params=params)).json()
        assert second["quotes"] == [] and second["timeout"] is False
        assert second["fresh"]["at"] - note["at"] >= 2000
        html = await http.get("/api/poll", params={**params, "format": "html"})
        assert '<template id="fresh" data-at="' in html.json()["html"]
        # Junk is as no `as_of` at all: only news answers (here none within 1 s of POLL_TIMEOUT).
        async with httpx.AsyncClient(base_url=app.base, timeout=1.5) as quick:
            with pytest.raises(httpx.ReadTimeout):
                await quick.get("/api/poll", params={**params, "as_of": "x" * 5000})
