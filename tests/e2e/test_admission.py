"""Junk symbols must not starve real ones: a client subscribed to 200 made-up symbols, against a
real provider (the fake Twelve Data server), does not delay another client's real symbol."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import orjson
import pytest
from websockets.asyncio.client import connect

from tests.fakes.provider import KEYS, FakeProviders, fake, fake_server
from tests.support import AppServer, quotes_in, recv_json, recv_until

__all__ = ["fake", "fake_server"]

INTERVAL = 1.0
JUNK = [f"{i:04d}" for i in range(200)]


@pytest.fixture
def app(fake: FakeProviders) -> Iterator[AppServer]:
    fake.state.unknown.update(JUNK)
    server = AppServer({
        "FEEDS": "twelvedata", "FETCH_INTERVAL": str(INTERVAL),
        "TWELVEDATA_API_KEY": KEYS["td"], "TWELVEDATA_BASE_URL": fake.url("td"),
        "TWELVEDATA_CALLS_PER_MINUTE": "100000", "NEW_SYMBOLS_PER_MINUTE": "6",
        "BOARD_SYMBOLS": "AAPL", "DEFAULT_WATCHLIST": "AAPL", "MAX_SYMBOLS_PER_CONNECTION": "200",
    })  # fmt: skip
    server.start()
    yield server
    server.stop()


def from_address(address: str, port: int) -> socket.socket:
    """A socket to the app from another loopback address: another client, as the app sees it."""
    sock = socket.socket()
    sock.bind((address, 0))
    sock.connect(("127.0.0.1", port))
    return sock


async def test_a_junk_client_does_not_starve_another_clients_new_symbol(
    fake: FakeProviders, app: AppServer
) -> None:
    junk_sock = from_address("127.0.0.2", app.port)
    async with connect(app.ws_url, sock=junk_sock) as junk:
        await recv_json(junk)
        started = time.monotonic()
        await junk.send(orjson.dumps({"action": "subscribe", "symbols": JUNK}))
        await recv_until(junk, lambda m: m["type"] == "subscribed")
        # The provider has been asked about (and refused) some of the junk: the fetcher's
        # budget for new symbols is being spent on it.
        await recv_until(junk, lambda m: m["type"] == "rejected", 10 * INTERVAL)

        honest_sock = from_address("127.0.0.3", app.port)
        async with connect(app.ws_url, sock=honest_sock) as honest:
            await recv_json(honest)
            asked = time.monotonic()
            await honest.send(orjson.dumps({"action": "subscribe", "symbols": ["IBM"]}))
            # Two fetch intervals, with room for a loaded machine: before, never (90 s tried).
            message = await recv_until(
                honest, lambda m: any(q["symbol"] == "IBM" for q in quotes_in(m)), 10
            )
            assert [q["source"] for q in quotes_in(message)] == ["twelvedata"]
            assert time.monotonic() - asked < 10
        asked_junk = sum(fake.state.symbols_asked[s] for s in JUNK)
        minutes = (time.monotonic() - started) / 60
    # The junk client got its share of the fetcher's budget for new symbols (half of 6 a
    # minute, a burst of 3), never all of it.
    assert 1 <= asked_junk <= 3 + 3 * minutes + 1, asked_junk
