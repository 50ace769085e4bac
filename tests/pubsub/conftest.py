from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from app.pubsub import Backend, open_backend


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    """Each backend in turn: the contract tests run against both (Redis for real)."""
    url = "memory://" if request.param == "memory" else request.getfixturevalue("redis_url")
    async with open_backend(url, registry_ttl=1.0, client_name="contract") as b:
        yield b
