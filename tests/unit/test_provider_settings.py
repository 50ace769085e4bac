"""Provider settings: names, defaults (the free tiers), and the rules across variables."""

from __future__ import annotations

import pytest

from app.feeds import build_feed, request_timeout
from app.settings import Settings, SettingsError


def test_free_tier_defaults_and_overrides() -> None:
    s = Settings.from_env({"FEEDS": "twelvedata,finnhub", "TWELVEDATA_API_KEY": "k1",
                           "FINNHUB_API_KEY": "k2", "TWELVEDATA_CALLS_PER_MINUTE": "55",
                           "FINNHUB_BASE_URL": "http://127.0.0.1:9/api/"})  # fmt: skip
    td, fh, av = (s.provider(n) for n in ("twelvedata", "finnhub", "alphavantage"))
    assert (td.calls_per_minute, td.calls_per_day, td.base_url) == (
        55,
        800,
        "https://api.twelvedata.com",
    )
    assert (fh.calls_per_minute, fh.calls_per_day, fh.base_url) == (
        60,
        0,
        "http://127.0.0.1:9/api",
    )
    assert (av.calls_per_minute, av.calls_per_day) == (5, 25)
    assert td.api_key.reveal() == "k1" and "k1" not in repr(s) and "k1" not in str(td)
    assert request_timeout(s) == pytest.approx(0.75)  # 2 s poll, two providers


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"FEEDS": "twelvedata"}, "FEEDS names twelvedata but TWELVEDATA_API_KEY is not set"),
        ({"FEEDS": "finnhub,simulated", "FINNHUB_API_KEY": "k"}, "simulated cannot be chained"),
        ({"FEEDS": "finnhub,finnhub", "FINNHUB_API_KEY": "k"}, "named twice"),
        ({"FEEDS": "yahoo"}, "expected a comma-separated list"),
        ({"TWELVEDATA_BASE_URL": "ftp://x"}, "TWELVEDATA_BASE_URL='ftp://x'"),
        ({"FINNHUB_CALLS_PER_MINUTE": "0"}, "FINNHUB_CALLS_PER_MINUTE='0'"),
    ],
)
def test_bad_feed_settings_are_refused_clearly(env: dict[str, str], problem: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env(env)
    assert any(problem in line for line in info.value.problems), info.value.problems


def test_real_providers_need_the_shared_http_client() -> None:
    s = Settings.from_env({"FEEDS": "alphavantage", "ALPHAVANTAGE_API_KEY": "k"})
    with pytest.raises(ValueError, match="HTTP client"):
        build_feed(s)
