"""Plain-number measurements behind /metrics, the wider simulated market, quiet server logs."""

from __future__ import annotations

import logging

import pytest

from app.feeds.simulated import SimulatedFeed
from app.feeds.universe import INSTRUMENTS, universe
from app.main import configure_logging
from app.settings import Settings
from app.stats import Histogram


def test_histogram_is_cumulative_with_inf_last() -> None:
    hist = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 3.0):
        hist.observe(value)
    assert hist.cumulative() == [("0.1", 2.0), ("1.0", 3.0), ("+Inf", 4.0)]
    assert hist.count == 4 and abs(hist.total - 3.65) < 1e-9


def test_universe_adds_synthetic_instruments_only_when_asked() -> None:
    assert len(universe()) == len(INSTRUMENTS) == len(universe(10))
    wide = universe(100)
    assert len(wide) == 100 and "SIM001" in wide and "TCS" in wide
    assert SimulatedFeed(symbols=100).check_symbol("SIM055") is None
    assert SimulatedFeed().check_symbol("SIM055") is not None


async def test_batch_prices_a_rotating_subset() -> None:
    feed = SimulatedFeed(seed=1, symbols=100, batch=3)
    symbols = [f"SIM{n:03d}" for n in range(1, 8)]
    seen = []
    for _ in range(3):
        result = await feed.fetch(symbols)
        assert len(result.quotes) == 3
        seen += [q.symbol for q in result.quotes]
    assert seen[:7] == symbols


def test_settings_read_the_new_variables() -> None:
    settings = Settings.from_env({"SIM_SYMBOLS": "100", "SIM_BATCH": "3", "GC_TUNING": "off"})
    assert (settings.sim_symbols, settings.sim_batch, settings.gc_tuning) == (100, 3, False)
    assert Settings.from_env({}).gc_tuning is True


def test_per_connection_server_log_lines_are_debug_only(caplog: pytest.LogCaptureFixture) -> None:
    server_log = logging.getLogger("uvicorn.error")
    saved = list(server_log.filters)
    try:
        configure_logging("info")
        configure_logging("info")  # idempotent: one filter of each kind
        assert len(server_log.filters) == len(saved) + 3
        with caplog.at_level(logging.INFO, logger="uvicorn.error"):
            server_log.info("connection open")
            server_log.info('%s - "WebSocket %s" [accepted]', "127.0.0.1:5", "/ws")
            server_log.info("Application startup complete.")
            server_log.warning("connection open")
        assert [r.getMessage() for r in caplog.records] == [
            "Application startup complete.",
            "connection open",
        ]
    finally:
        server_log.filters[:] = saved
