from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from app.pubsub import open_backend
from app.pubsub.base import Backend


def backend_url(kind: str, request: pytest.FixtureRequest) -> str:
    """`memory`, `redis` (DB 0: no prefix) or `redis-db1` (DB 1: every name prefixed `db1:`)."""
    if kind == "memory":
        return "memory://"
    url: str = request.getfixturevalue("redis_url")
    return url.removesuffix("/0") + "/1" if kind == "redis-db1" else url


@pytest.fixture(params=["memory", "redis", "redis-db1"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    """Each backend in turn: the contract tests run against all (Redis for real, with and
    without a key prefix)."""
    url = backend_url(request.param, request)
    async with open_backend(url, registry_ttl=1.0, client_name="contract") as b:
        yield b
