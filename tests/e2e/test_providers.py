"""The app (`python -m app`) on FEEDS=twelvedata,finnhub against the fake provider server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.fakes.provider import KEYS, FakeProviders, fake, fake_server
from tests.support import AppServer, eventually, quotes_in, recv_until, without_replica

__all__ = ["fake", "fake_server"]


@pytest.fixture
def app(fake: FakeProviders) -> Iterator[AppServer]:
    server = AppServer({
        "FEEDS": "twelvedata,finnhub", "FETCH_INTERVAL": "1", "LOG_LEVEL": "debug",
        "TWELVEDATA_API_KEY": KEYS["td"], "TWELVEDATA_BASE_URL": fake.url("td"),
        "FINNHUB_API_KEY": KEYS["fh"], "FINNHUB_BASE_URL": fake.url("fh"),
        "TWELVEDATA_CALLS_PER_MINUTE": "100000", "FINNHUB_CALLS_PER_MINUTE": "100000",
        "BOARD_SYMBOLS": "AAPL,MSFT", "DEFAULT_WATCHLIST": "AAPL,MSFT",
        "BREAKER_FAIL_MAX": "2", "BREAKER_RESET_TIMEOUT": "600", "POLL_TIMEOUT": "2",
    })  # fmt: skip
    server.start()
    yield server
    server.stop()


def sources(message: dict[str, Any]) -> set[str]:
    return {q["source"] for q in quotes_in(message)}


async def test_failover_breaker_and_truthful_staleness(fake: FakeProviders, app: AppServer) -> None:
    async with connect(app.ws_url) as ws, httpx.AsyncClient(base_url=app.base) as http:
        await ws.send(b'{"action":"subscribe","symbols":["AAPL","NOPE"],"id":"s"}')
        ack = await recv_until(ws, lambda m: m["type"] == "subscribed")
        assert ack["accepted"] == ["AAPL", "NOPE"]
        rejected = await recv_until(ws, lambda m: m["type"] == "rejected")
        assert rejected["symbol"] == "NOPE" and "invalid" in rejected["reason"]
        await ws.send(b'{"action":"subscribe","symbols":["NOPE"],"id":"again"}')
        again = await recv_until(ws, lambda m: m["type"] == "subscribed" and m["id"] == "again")
        assert again["rejected"][0]["reason"] == rejected["reason"]  # known now: refused at once
        await recv_until(ws, lambda m: "twelvedata" in sources(m))

        fake.state.mode["td"] = "down"
        await recv_until(ws, lambda m: "finnhub" in sources(m))

        async def breaker_open() -> dict[str, Any] | None:
            ready = (await http.get("/ready")).json()
            providers = ready["details"]["providers"]
            return ready if providers["twelvedata"]["breaker"] == "open" else None

        ready = await eventually(breaker_open, 15, "the Twelve Data breaker to open")
        assert ready["ready"] is True  # a provider outage does not take the replica out
        assert ready["details"]["providers"]["finnhub"]["breaker"] == "closed"
        assert "circuit breaker of twelvedata: closed -> open" in app.log()
        metrics = without_replica((await http.get("/metrics")).text)
        assert 'stocktracker_provider_breaker_state{provider="twelvedata",state="open"} 1.0' in (
            metrics
        )
        assert 'stocktracker_provider_calls_total{outcome="error",provider="twelvedata"}' in (
            metrics
        )
        assert 'stocktracker_provider_quota_remaining{provider="finnhub",window="minute"}' in (
            metrics
        )
        await recv_until(ws, lambda m: "finnhub" in sources(m))

        fake.state.mode["fh"] = "down"
        status = await recv_until(ws, lambda m: m["type"] == "status" and m["state"] == "stale")
        assert status["reason"] == "circuit_open" and status["since"] is not None

        async def stale_snapshot() -> dict[str, Any] | None:
            body = (await http.get("/api/quotes?symbols=AAPL")).json()
            return body if body["feed_status"]["state"] == "stale" else None

        body = await eventually(stale_snapshot, 10, "/api/quotes to say stale")
        [last] = body["quotes"]
        assert last["source"] == "finnhub"  # the last real quote stays, nothing is invented
        calls = fake.state.calls["fh"]
        await eventually(
            lambda: _true_after(fake.state.calls["fh"] >= calls + 2), 10, "two more failed polls"
        )
        await ws.send(b'{"action":"ping","t":"barrier"}')
        while (message := orjson.loads(await ws.recv()))["type"] != "pong":
            for quote in quotes_in(message):
                assert quote["seq"] <= last["seq"], "a quote appeared while every provider failed"
        again = (await http.get("/api/quotes?symbols=AAPL")).json()["quotes"][0]
        assert again["seq"] == last["seq"] and again["price"] == last["price"]

        page = (await http.get("/")).text
        assert "Prices refresh every 1 s" in page
        shown = page + (await http.get("/ready")).text + (await http.get("/api/quotes")).text
        shown += (await http.get("/metrics")).text
    log = app.log()
    assert all(key not in log + shown for key in KEYS.values())


async def _true_after(value: bool) -> bool | None:
    return value or None


async def test_pages_get_a_rejected_row_instead_of_waiting_forever(app: AppServer) -> None:
    async def row_of(page: ClientConnection, symbol_id: str) -> str:
        deadline = time.monotonic() + 10
        while True:
            frame = str(await asyncio.wait_for(page.recv(), max(deadline - time.monotonic(), 0)))
            if f'id="{symbol_id}"' in frame:
                return frame

    # The fetcher learns that the provider does not know NOPE: the page's row says so.
    async with connect(app.ws_url + "?format=html&symbols=AAPL,NOPE") as page:
        frame = await row_of(page, "q-NOPE")
    assert 'id="q-NOPE" hx-swap-oob="true" class="quote rejected"' in frame
    assert "Unknown symbol" in frame and "not priced by twelvedata, finnhub" in frame
    # Known now: a page that subscribes later is refused at once, and told so the same way.
    async with connect(app.ws_url + "?format=html&symbols=NOPE") as page:
        assert 'class="quote rejected"' in await row_of(page, "q-NOPE")
    # Long-poll pages get the same row.
    async with httpx.AsyncClient(base_url=app.base, timeout=10) as http:
        body = (
            await http.get("/api/poll", params={"symbols": "AAPL,NOPE", "format": "html"})
        ).json()
        assert [r["symbol"] for r in body["rejected"]] == ["NOPE"]
        assert 'id="q-NOPE" hx-swap-oob="true" class="quote rejected"' in body["html"]
        # A rejection is news once: the next poll with that cursor waits like any other, so a
        # page whose symbols are all rejected does not poll in a tight loop.
        told = (await http.get("/api/poll", params={"symbols": "NOPE"})).json()
        assert [r["symbol"] for r in told["rejected"]] == ["NOPE"] and not told["timeout"]
        params = {"symbols": "NOPE", "cursor": told["cursor"]}
        again = (await http.get("/api/poll", params=params)).json()
        assert again["timeout"] and [r["symbol"] for r in again["rejected"]] == ["NOPE"]
        # The server-rendered page shows it before any script runs; its stock page is a 404.
        page_html = (await http.get("/", headers={"Cookie": "watchlist=AAPL,NOPE"})).text
        assert 'id="q-NOPE" class="quote rejected"' in page_html
        assert (await http.get("/stock/NOPE")).status_code == 404
