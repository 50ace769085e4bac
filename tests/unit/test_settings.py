from __future__ import annotations

import subprocess
import sys

import pytest

from app.pubsub.cluster_names import check_redis_py
from app.settings import DEFAULT_WATCHLIST, Settings, SettingsError
from tests.support import ROOT


def test_defaults_without_environment() -> None:
    s = Settings.from_env({})
    assert (s.host, s.port, s.fetch_interval) == ("127.0.0.1", 8000, 2.0)
    assert s.bus_url == "memory://"
    assert s.default_watchlist == DEFAULT_WATCHLIST
    assert s.max_symbols_per_connection == 50
    assert s.max_message_bytes == 65536


def test_values_are_parsed_and_normalised() -> None:
    s = Settings.from_env({
        "PORT": "9000", "FETCH_INTERVAL": "0.5", "REDIS_URL": "redis://h:6379/1",
        "DEFAULT_WATCHLIST": " tcs, infy ,TCS,nifty 50", "ALLOWED_ORIGINS": "https://A.example/",
        "SIM_SEED": "42",
    })  # fmt: skip
    assert s.port == 9000
    assert s.fetch_interval == 0.5
    assert s.bus_url == "redis://h:6379/1"
    assert s.default_watchlist == ("TCS", "INFY", "NIFTY 50")
    assert s.allowed_origins == ("https://a.example",)
    assert s.sim_seed == 42


def test_every_bad_value_is_reported_at_once() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({
            "FETCH_INTERVAL": "abc", "PORT": "70000", "REDIS_URL": "http://x",
            "DEFAULT_WATCHLIST": "TCS,<script>", "FEEDS": "nope", "LOG_LEVEL": "loud",
        })  # fmt: skip
    text = str(info.value)
    for name in (
        "FETCH_INTERVAL='abc'",
        "PORT='70000'",
        "REDIS_URL",
        "DEFAULT_WATCHLIST",
        "FEEDS",
        "LOG_LEVEL",
    ):
        assert name in text
    assert len(info.value.problems) == 6


def test_redis_prefix_is_derived_unless_given_and_checked() -> None:
    assert Settings.from_env({"REDIS_URL": "redis://h:6379/3"}).redis_prefix is None  # derived
    s = Settings.from_env({"REDIS_URL": "redis://h/0", "REDIS_PREFIX": "{shop-1}.quotes:"})
    assert s.redis_prefix == "{shop-1}.quotes:"
    for bad in ("has space", "x" * 65, "a*", "ünï"):
        with pytest.raises(SettingsError, match="REDIS_PREFIX"):
            Settings.from_env({"REDIS_PREFIX": bad})


def test_redis_cluster_settings_are_checked() -> None:
    s = Settings.from_env({"REDIS_URL": "redis://h:7000", "REDIS_CLUSTER": "on"})
    assert (s.redis_cluster, s.redis_shards) == (True, 16)
    assert not Settings.from_env({}).redis_cluster
    assert Settings.from_env({"REDIS_SHARDS": "256"}).redis_shards == 256
    for bad in ("0", "1025", "x"):
        with pytest.raises(SettingsError, match="REDIS_SHARDS"):
            Settings.from_env({"REDIS_SHARDS": bad})
    with pytest.raises(SettingsError, match="REDIS_CLUSTER=on needs REDIS_URL"):
        Settings.from_env({"REDIS_URL": "unix:///tmp/r.sock", "REDIS_CLUSTER": "on"})
    with pytest.raises(SettingsError, match="REDIS_CLUSTER=on needs REDIS_URL"):
        Settings.from_env({"REDIS_CLUSTER": "on"})
    with pytest.raises(SettingsError, match="REDIS_PREFIX must not contain"):
        Settings.from_env(
            {"REDIS_URL": "redis://h:7000", "REDIS_CLUSTER": "on", "REDIS_PREFIX": "{a}:"}
        )


def test_cluster_mode_with_an_old_redis_py_stops_the_start_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.metadata

    monkeypatch.setattr(importlib.metadata, "version", lambda name: "5.0.8")
    with pytest.raises(SettingsError, match=r"REDIS_CLUSTER=on needs redis-py >= 8\.1"):
        Settings.from_env({"REDIS_URL": "redis://h:7000", "REDIS_CLUSTER": "on"})
    Settings.from_env({"REDIS_URL": "redis://h:7000"})  # the single-server path does not care


def test_cluster_mode_refuses_an_old_redis_py() -> None:
    check_redis_py("8.1.0")
    check_redis_py("9.0.0")
    with pytest.raises(RuntimeError, match=r"needs redis-py >= 8\.1 \(installed: 5\.0\.8\)"):
        check_redis_py("5.0.8")


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "1e9"])
def test_fetch_interval_must_be_a_sane_duration(value: str) -> None:
    with pytest.raises(SettingsError, match="FETCH_INTERVAL"):
        Settings.from_env({"FETCH_INTERVAL": value})


def test_chart_history_bounds() -> None:
    s = Settings.from_env({})
    assert (s.history_points, s.history_ttl) == (3000, 21600.0)
    s = Settings.from_env({"HISTORY_POINTS": "500", "HISTORY_TTL": "3600"})
    assert (s.history_points, s.history_ttl) == (500, 3600.0)
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"HISTORY_POINTS": "0", "HISTORY_TTL": "0"})
    assert len(info.value.problems) == 2


def test_run_command_refuses_a_bad_value_with_one_clear_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "app"], cwd=ROOT, capture_output=True, timeout=30,
        env={"PATH": "/usr/bin:/bin", "FETCH_INTERVAL": "abc"},
    )  # fmt: skip
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert "FETCH_INTERVAL='abc': expected a number of seconds" in err
    assert "Traceback" not in err
