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
# A new symbol a minute more than the junk can take: one every 2 s.
NEW_PER_MINUTE = 30
ADDRESSES = ("127.0.0.2", "127.0.0.4", "127.0.0.5")
# Each junk client its own 200 made-up symbols: 0000..0199, 1000..1199, 2000..2199.
JUNK = {a: [f"{n}{i:03d}" for i in range(200)] for n, a in enumerate(ADDRESSES)}


@pytest.fixture
def app(fake: FakeProviders) -> Iterator[AppServer]:
    fake.state.unknown.update(s for symbols in JUNK.values() for s in symbols)
    server = AppServer({
        "FEEDS": "twelvedata", "FETCH_INTERVAL": str(INTERVAL),
        "TWELVEDATA_API_KEY": KEYS["td"], "TWELVEDATA_BASE_URL": fake.url("td"),
        "TWELVEDATA_CALLS_PER_MINUTE": "100000", "NEW_SYMBOLS_PER_MINUTE": str(NEW_PER_MINUTE),
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


async def test_junk_clients_do_not_starve_another_clients_new_symbol(
    fake: FakeProviders, app: AppServer
) -> None:
    # Three junk clients (three addresses, two connections each), 200 made-up symbols apiece.
    addresses = ADDRESSES * 2
    junk = [await connect(app.ws_url, sock=from_address(a, app.port)) for a in addresses]
    try:
        started = time.monotonic()
        for ws, address in zip(junk, addresses, strict=True):
            await recv_json(ws)
            await ws.send(orjson.dumps({"action": "subscribe", "symbols": JUNK[address]}))
        # The provider has been asked about (and refused) some of the junk: the fetcher's
        # budget for new symbols is being spent on it.
        await recv_until(junk[0], lambda m: m["type"] == "rejected", 10 * INTERVAL)

        async with connect(app.ws_url, sock=from_address("127.0.0.3", app.port)) as honest:
            await recv_json(honest)
            asked = time.monotonic()
            await honest.send(orjson.dumps({"action": "subscribe", "symbols": ["IBM"]}))
            # The junk spent the budget for new symbols, so IBM is first in line for the next
            # token (2 s here), then two fetch intervals; with room for a loaded machine.
            # Before, it was never priced (120 s tried).
            message = await recv_until(
                honest, lambda m: any(q["symbol"] == "IBM" for q in quotes_in(m)), 10
            )
            assert [q["source"] for q in quotes_in(message)] == ["twelvedata"]
            assert time.monotonic() - asked < 10
        asked_junk = sum(fake.state.symbols_asked[s] for j in JUNK.values() for s in j)
        minutes = (time.monotonic() - started) / 60
    finally:
        for ws in junk:  # they read nothing lately: no closing handshake, just go
            ws.transport.abort()
    # The junk never got more than the fetcher's budget for new symbols.
    assert 1 <= asked_junk <= NEW_PER_MINUTE * (1 + minutes) + 1, asked_junk
