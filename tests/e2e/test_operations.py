"""Operations past one worker, on a real server: labelled and negotiated metrics, HTTP request
metrics, honest provider call counts, JSON logs with request ids, an outage's warnings budgeted."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.fakes.provider import KEYS, FakeProviders, fake, fake_server
from tests.support import AppServer, RedisServer, eventually, quotes_in, recv_json, wait_for

__all__ = ["fake", "fake_server"]


@pytest.fixture(scope="module")
def server() -> Iterator[AppServer]:
    app = AppServer({"LOG_FORMAT": "json"})
    app.start()
    yield app
    app.stop()


def test_every_series_names_its_replica(server: AppServer) -> None:
    replica = server.details()["replica"]
    text = httpx.get(f"{server.base}/metrics", timeout=5).text
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    assert len(samples) > 50
    unlabelled = [s.name for s in samples if s.labels.get("replica") != replica]
    assert unlabelled == []
    assert any(s.name == "process_resident_memory_bytes" for s in samples)


def test_http_requests_are_counted_by_route_template_and_status(server: AppServer) -> None:
    paths = ("/stock/TCS", "/stock/INFY", "/stock/NOPE", "/no/such/page", "/static/app.css")
    with httpx.Client(base_url=server.base, timeout=10) as http:
        for path in paths:
            http.get(path)
    # A request is counted when its ASGI call returns, just after the client has the answer.
    counts: dict[tuple[str, str], float] = {}

    def all_counted() -> bool:
        counts.update(_request_counts(server))
        return sum(counts.values()) >= len(paths)

    wait_for(all_counted, 10, "the requests to be counted")
    assert counts[("/stock/{symbol:path}", "200")] >= 2
    assert counts[("/stock/{symbol:path}", "404")] >= 1
    assert counts[("unmatched", "404")] >= 1  # never the path a client made up
    assert counts[("/static", "200")] >= 1
    assert not any("NOPE" in route or "/no/such" in route for route, _ in counts)


def _request_counts(server: AppServer) -> dict[tuple[str, str], float]:
    text = httpx.get(f"{server.base}/metrics", timeout=5).text
    return {
        (s.labels["route"], s.labels["status"]): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "stocktracker_http_request_duration_seconds_count"
        and s.labels["route"] != "/metrics"
    }


def test_the_exposition_format_follows_accept(server: AppServer) -> None:
    url = f"{server.base}/metrics"
    plain = httpx.get(url, timeout=5)
    assert plain.headers["content-type"].startswith("text/plain; version=0.0.4")
    om = httpx.get(url, headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert om.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert om.text.endswith("# EOF\n")
    assert "# TYPE stocktracker_http_request_duration_seconds histogram\n" in om.text
    assert 'stocktracker_fetcher_leader{replica="' in om.text


async def test_json_log_lines_carry_the_request_id(server: AppServer) -> None:
    # A refused origin is logged while serving the upgrade: the line carries its request id.
    headers = {"Origin": "https://evil.example", "X-Request-ID": "req-test-0001"}
    with pytest.raises(InvalidStatus):
        async with connect(server.ws_url, additional_headers=headers):
            pass
    lines = [orjson.loads(line) for line in server.log().splitlines() if line.strip()]
    refused = [x for x in lines if "refused a /ws upgrade" in x["message"]]
    assert refused and refused[0]["request"] == "req-test-0001"
    assert {"time", "level", "logger", "message", "replica"} <= set(refused[0])
    assert any(x["logger"] == "uvicorn.error" for x in lines)  # uvicorn's lines are JSON too


async def test_provider_calls_count_only_calls_made(fake: FakeProviders) -> None:
    # Twelve Data is down; 8 credits a minute for 19 board symbols: one failed call spends the
    # minute, and every poll after it has nothing due. Those polls are not calls.
    fake.state.mode["td"] = "down"
    app = AppServer({
        "FEEDS": "twelvedata", "TWELVEDATA_API_KEY": KEYS["td"],
        "TWELVEDATA_BASE_URL": fake.url("td"), "TWELVEDATA_CALLS_PER_MINUTE": "8",
        "FETCH_INTERVAL": "0.2",
    })  # fmt: skip
    app.start()
    try:

        async def many_polls() -> tuple[dict[str, float], int] | None:
            made = fake.state.calls["td"]
            async with httpx.AsyncClient() as http:
                text = (await http.get(f"{app.base}/metrics", timeout=5)).text
            if fake.state.calls["td"] != made:  # a call between the two reads: read again
                return None
            # (A call the provider has answered but the app has not counted yet also differs:
            # the counts must agree once nothing is in flight, or this times out.)
            values = {
                (s.name, s.labels.get("outcome", "")): s.value
                for f in text_string_to_metric_families(text)
                for s in f.samples
            }
            if values.get(("stocktracker_fetches_total", "ok"), 0) < 10:
                return None
            counted = {
                o: v for (n, o), v in values.items() if n == "stocktracker_provider_calls_total"
            }
            # A call the poll's timeout cut short is `cancelled`, whether or not it got there.
            failed = counted.get("error", 0) + counted.get("rate_limited", 0)
            if not failed <= made <= failed + counted.get("cancelled", 0):
                return None
            return counted, made

        calls, made = await eventually(many_polls, 20, "ten polls, each call made counted")
        assert made >= 1
        assert calls.get("ok", 0) == 0, calls
    finally:
        app.stop()


async def test_an_outage_repeats_each_warning_once_a_minute() -> None:
    redis = RedisServer()
    redis.start()
    app = AppServer({"REDIS_URL": redis.url, "FETCH_INTERVAL": "0.2"})
    app.start()
    try:
        async with connect(f"{app.ws_url}?symbols=TCS") as ws:
            while not quotes_in(await recv_json(ws)):
                pass
        before = _fetches(app)
        redis.stop()  # from now on every fetch tick (5 a second) fails to publish

        async def many_failed_ticks() -> bool:
            return await asyncio.to_thread(_fetches, app) >= before + 15

        await eventually(many_failed_ticks, 20, "fifteen fetch ticks during the outage")
        log = app.log()
        assert log.count("fetch tick failed") == 1, log
        assert log.count("subscription report failed") <= 1, log
    finally:
        app.stop()
        redis.stop()


def _fetches(app: AppServer) -> float:
    """Calls into the feed so far (during a Redis outage each tick still fetches, then fails to
    publish)."""
    text = httpx.get(f"{app.base}/metrics", timeout=5).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "stocktracker_fetches_total"
    )
