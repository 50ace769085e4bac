"""Replay feed: JSONL and CSV recordings, recorded and accelerated speed, on a hand-driven clock."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from app.feeds.replay import ReplayFeed, ReplayFileError, load
from app.settings import Settings, SettingsError
from tests.feeds.scripted import Clock
from tests.support import ROOT

SAMPLE = ROOT / "data" / "sample-replay.jsonl"


async def test_the_sample_plays_at_recorded_speed() -> None:
    tracks = load(SAMPLE)
    assert set(tracks) == {"AAPL", "MSFT", "RELIANCE", "TCS"}
    clock = Clock(0)
    feed = ReplayFeed(tracks, speed=1.0, clock=clock)
    first = (await feed.fetch(["AAPL", "NOPE"])).quotes[0]
    assert first.source == "replay" and first.source_time == tracks["AAPL"][0].source_time
    assert feed.check_symbol("NOPE") is not None and feed.check_symbol("TCS") is None
    clock.advance(1.9)
    assert (await feed.fetch(["AAPL"])).quotes[0] == first
    clock.advance(0.1)
    second = (await feed.fetch(["AAPL"])).quotes[0]
    assert second.source_time == first.source_time + 2000 and second == tracks["AAPL"][1]


async def test_accelerated_speed_and_looping() -> None:
    tracks = load(SAMPLE)
    clock = Clock(0)
    feed = ReplayFeed(tracks, speed=10.0, clock=clock)
    await feed.fetch(["TCS"])
    clock.advance(1.0)  # ten recorded seconds
    assert (await feed.fetch(["TCS"])).quotes[0] == tracks["TCS"][5]
    clock.advance(4.9)  # 59 recorded seconds: past the 58 s recording, so it starts over
    assert (await feed.fetch(["TCS"])).quotes[0] == tracks["TCS"][0]


async def test_csv_with_derived_change(tmp_path: Path) -> None:
    path = tmp_path / "rec.csv"
    path.write_text(
        "t,symbol,price,prev_close,currency\n"
        "2025-01-15T09:15:00+05:30,tcs,3150.05,3138.00,INR\n"
        "1736912760000,TCS,3151.00,3138.00,INR\n"
    )
    feed = ReplayFeed(load(path), clock=Clock(0))
    [quote] = (await feed.fetch(["TCS"])).quotes
    assert quote.change == Decimal("12.05") and quote.change_pct == Decimal("0.3840")
    assert quote.exchange == "NSE"  # from the reference universe


def test_a_bad_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"t": 1, "symbol": "TCS", "price": "1"}\n{"t": 2, "symbol": "TCS"}\n')
    with pytest.raises(ReplayFileError, match="bad.jsonl:2: price"):
        load(path)


def test_settings_require_a_replay_file() -> None:
    with pytest.raises(SettingsError, match="REPLAY_FILE"):
        Settings.from_env({"FEEDS": "replay"})
    with pytest.raises(SettingsError, match="no such file"):
        Settings.from_env({"FEEDS": "replay", "REPLAY_FILE": "/nonexistent.jsonl"})
    s = Settings.from_env({"FEEDS": "replay", "REPLAY_FILE": str(SAMPLE), "REPLAY_SPEED": "5"})
    assert s.replay_speed == 5.0
