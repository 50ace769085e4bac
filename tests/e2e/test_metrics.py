"""`GET /metrics` on a real server: valid Prometheus text, and the counters move with the quotes."""

from __future__ import annotations

import time

import httpx
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from tests.support import AppServer, eventually, quotes_in, recv_json

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(server: AppServer) -> Samples:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{server.base}/metrics", timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = dict(sample.labels)
            assert labels.pop("replica")  # every series names its process (test_operations.py)
            samples[(sample.name, tuple(sorted(labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def test_metrics_parse_and_move_when_quotes_flow(app_server: AppServer) -> None:
    before = await scrape(app_server)
    assert value(before, "stocktracker_fetcher_leader") == 1

    async def listening() -> bool:
        # Up once the listener hears this replica's own heartbeat (sent every second).
        return value(await scrape(app_server), "stocktracker_bus_listener_up") == 1

    await eventually(listening, what="bus_listener_up to be 1")
    async with connect(f"{app_server.ws_url}?symbols=TCS,INFY") as ws:
        seen, tcs_published = 0, 0
        while seen < 4:
            quotes = quotes_in(await recv_json(ws))
            seen += len(quotes)
            for quote in quotes:
                if quote["symbol"] == "TCS":
                    tcs_published = max(tcs_published, quote["published_at"])
        assert tcs_published, "no TCS quote among the first frames"

        async def moved() -> Samples | None:
            after = await scrape(app_server)
            # The default server writes quote frames on the fast path.
            fast = "stocktracker_frames_sent_total"
            if (
                value(after, fast, path="fast") > value(before, fast, path="fast")
                and value(after, "stocktracker_fanout_lag_seconds_count") > 0
            ):
                return after
            return None

        after = await eventually(moved, what="frames_sent_total to grow")
        assert value(after, "stocktracker_connections", transport="websocket") >= 1
        assert value(after, "stocktracker_subscriptions") >= 2
        assert value(after, "stocktracker_symbols_watched") >= 2
        # The hub's latest TCS is at least as new as the one this client got, and older than now:
        # an age in ms, from source_time, or clamped to 0 from the future would fail.
        age = value(after, "stocktracker_quote_age_seconds", symbol="TCS")
        assert 0 < age <= time.time() - tcs_published / 1000, age
        for name in (
            "stocktracker_quotes_published_total",
            "stocktracker_quotes_received_total",
            "stocktracker_quotes_delivered_total",
        ):
            assert value(after, name) > value(before, name), name
        assert value(after, "stocktracker_fetches_total", outcome="ok") > 0
        assert value(after, "stocktracker_fetch_duration_seconds_count") > 0
        # The monitor keeps sampling, and the gauge is a wake-up delay, not the sleep itself
        # (a quiet app's loop is never a whole sampling interval late).
        lag_count = "stocktracker_event_loop_lag_distribution_seconds_count"
        assert value(after, lag_count) > value(before, lag_count)
        lag = value(after, "stocktracker_event_loop_lag_seconds")
        assert lag < 0.25 and lag <= value(
            after, "stocktracker_event_loop_lag_distribution_seconds_sum"
        )
        assert value(after, "process_resident_memory_bytes") > 0
    labels = {name for _, pairs in after for name, _ in pairs}
    allowed = {"transport", "symbol", "outcome", "generation", "provider", "state", "le", "path",
               "route", "status"}  # fmt: skip
    assert labels <= allowed
