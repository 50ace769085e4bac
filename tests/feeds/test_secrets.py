"""API keys never reach logs, error texts, statuses or details, whatever the providers answer."""

from __future__ import annotations

import logging

import httpx
import pytest

from app.feeds import build_feed
from app.feeds.base import FeedError
from app.settings import Settings
from tests.fakes.provider import KEYS, FakeProviders


def settings_for(fake: FakeProviders, feeds: str) -> Settings:
    return Settings.from_env({
        "FEEDS": feeds, "FETCH_INTERVAL": "2",
        "TWELVEDATA_API_KEY": KEYS["td"], "TWELVEDATA_BASE_URL": fake.url("td"),
        "FINNHUB_API_KEY": KEYS["fh"], "FINNHUB_BASE_URL": fake.url("fh"),
        "ALPHAVANTAGE_API_KEY": KEYS["av"], "ALPHAVANTAGE_BASE_URL": fake.url("av"),
        "ALPHAVANTAGE_CALLS_PER_MINUTE": "1000", "ALPHAVANTAGE_CALLS_PER_DAY": "0",
        "TWELVEDATA_CALLS_PER_MINUTE": "1000", "TWELVEDATA_CALLS_PER_DAY": "0",
        "BREAKER_FAIL_MAX": "100",
    })  # fmt: skip


async def test_no_key_in_logs_errors_or_status(
    fake: FakeProviders, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = settings_for(fake, "twelvedata,finnhub,alphavantage")
    texts: list[str] = [repr(settings), str(settings.provider("twelvedata"))]
    async with httpx.AsyncClient() as http:
        chain = build_feed(settings, http)
        scenarios = [
            ("ok", "ok", "ok"), ("key", "key", "badkey"), ("minute", "limit", "echo"),
            ("html", "down", "html"), ("garbage", "ok", "premium"), ("down", "down", "ok"),
        ]  # fmt: skip
        for td, fh, av in scenarios:
            fake.state.mode.update(td=td, fh=fh, av=av)
            for symbols in (["AAPL", "NOPE"], ["IBM"]):
                result = await chain.fetch(symbols)
                texts += [str(chain.status()), str(chain.describe()), str(result.rejected)]
        for provider in ("td", "fh", "av"):  # each adapter alone, raising
            fake.state.mode.update(td="key", fh="key", av="echo")
            adapter = build_feed(
                settings_for(
                    fake, {"td": "twelvedata", "fh": "finnhub", "av": "alphavantage"}[provider]
                ),
                http,
            )
            await adapter.fetch(["AAPL"])  # the chain catches and reports
            texts.append(str(adapter.status()))
    assert fake.state.calls["av"] > 0 and any("apikey=" in u for u in fake.state.seen_urls)
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert "HTTP Request" in logged  # httpx did log its requests, with the key masked
    for key in KEYS.values():
        assert key not in logged
        assert all(key not in text for text in texts)


async def test_adapter_errors_do_not_quote_the_key(fake: FakeProviders) -> None:
    from app.feeds.alphavantage import AlphaVantageFeed

    fake.state.mode["av"] = "echo"
    async with httpx.AsyncClient() as http:
        with pytest.raises(FeedError) as info:
            await AlphaVantageFeed(http, KEYS["av"], fake.url("av")).fetch(["IBM"])
    assert "detected your API key as ***" in str(info.value)
