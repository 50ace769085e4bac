"""app.core.latest: the newest quote per symbol, and its encodings kept beside it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest

from app.core.latest import LatestQuotes
from app.formats import JSON_FORMAT
from app.models import Quote
from app.pubsub import open_backend
from app.pubsub.base import Backend
from tests.unit.test_models import make_quote


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    async with open_backend("memory://", registry_ttl=5, client_name="test") as b:
        yield b


async def test_only_newer_quotes_enter_and_each_symbols_first_is_announced(
    backend: Backend,
) -> None:
    firsts: list[str] = []
    latest = LatestQuotes(backend.snapshots, lambda quotes: None, firsts.append)
    assert latest.remember(make_quote(seq=2)) and not latest.remember(make_quote(seq=1))
    assert latest.remember(make_quote(seq=1, epoch=99))  # a later term wins
    assert firsts == ["TCS"] and "TCS" in latest and latest.symbols() == ["TCS"]


async def test_the_text_of_the_newest_quote_is_reused_and_a_newer_quote_re_encoded(
    backend: Backend,
) -> None:
    delivered: list[Quote] = []
    latest = LatestQuotes(backend.snapshots, delivered.extend)
    first = make_quote(seq=1)
    latest.remember(first)
    text = latest.encoded(JSON_FORMAT, first)
    assert latest.encoded(JSON_FORMAT, first) is text  # a snapshot after the fan-out
    newer = make_quote(seq=2)
    latest.remember(newer)
    assert orjson.loads(latest.encoded(JSON_FORMAT, newer))["seq"] == 2
    assert orjson.loads(latest.encoded(JSON_FORMAT, first))["seq"] == 1  # never a stale text
    assert delivered == []
