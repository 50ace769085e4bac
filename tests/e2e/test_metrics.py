"""`GET /metrics` on a real server: valid Prometheus text, and the counters move with the quotes."""

from __future__ import annotations

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
    assert value(before, "stocktracker_bus_listener_up") in (0, 1)
    async with connect(f"{app_server.ws_url}?symbols=TCS,INFY") as ws:
        seen = 0
        while seen < 4:
            seen += len(quotes_in(await recv_json(ws)))

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
        assert value(after, "stocktracker_quote_age_seconds", symbol="TCS") >= 0
        for name in (
            "stocktracker_quotes_published_total",
            "stocktracker_quotes_received_total",
            "stocktracker_quotes_delivered_total",
        ):
            assert value(after, name) > value(before, name), name
        assert value(after, "stocktracker_fetches_total", outcome="ok") > 0
        assert value(after, "stocktracker_fetch_duration_seconds_count") > 0
        assert value(after, "stocktracker_event_loop_lag_seconds") >= 0
        assert value(after, "process_resident_memory_bytes") > 0
    labels = {name for _, pairs in after for name, _ in pairs}
    allowed = {"transport", "symbol", "outcome", "generation", "provider", "state", "le", "path",
               "route", "status"}  # fmt: skip
    assert labels <= allowed
