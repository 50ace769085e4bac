from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.fakes.provider import fake, fake_server

__all__ = ["fake", "fake_server", "http"]


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=2.0) as client:
        yield client
