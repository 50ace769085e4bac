"""The fast tier: the app in-process under Starlette's TestClient, feed adapters on httpx's
MockTransport. No server, no port, no Redis: the whole directory runs in a few seconds."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.unit.asgi import TestClient, app_client


@pytest.fixture
def client() -> Iterator[TestClient]:
    """A fresh app (memory bus, simulated feed, fetching every 0.2 s), its lifespan running."""
    with app_client({"MAX_SYMBOLS_PER_CONNECTION": "5", "POLL_TIMEOUT": "1"}) as client:
        yield client
