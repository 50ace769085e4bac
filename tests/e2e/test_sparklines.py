"""Sparklines over real HTTP: every watchlist and board row draws one from the shared history
before any script runs (real uvicorn; memory bus, and real Redis with a history the page did not
write), at most MAX_POINTS points each; the live rows never carry one."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest
import redis

from app.settings import DEFAULT_BOARD, DEFAULT_WATCHLIST
from app.sparkline import MAX_POINTS
from tests.support import AppServer

CELL = re.compile(r'<td class="spark c-spark" data-spark="([^"]+)"[^>]*>(.*?)</td>')
SVG = re.compile(
    r'<svg class="(up|down|flat)" viewBox="0 0 80 24" role="img" aria-label="([^"]+)">'
    r'<polyline points="([^"]+)"></polyline><circle [^>]+></circle></svg>'
)
LABEL = re.compile(
    r"(?P<symbol>.+) today: (from [\d,]+\.\d\d to [\d,]+\.\d\d, "
    r"(up [\d.]+ %|down [\d.]+ %|unchanged)|[\d,]+\.\d\d, the only price so far)"
)


def sparks(html: str) -> dict[str, tuple[str, str, int]]:
    """Symbol -> (direction, label, number of points) of each row's sparkline."""
    found: dict[str, tuple[str, str, int]] = {}
    for symbol, inner in CELL.findall(html):
        svg = SVG.fullmatch(inner)
        assert svg is not None, inner
        found[symbol] = (svg[1], svg[2], len(svg[3].split()))
    return found


def wait_for_lines(http: httpx.Client, path: str, points: int, deadline: float) -> str:
    """The page once every row's sparkline has at least `points` points (the fetcher appends
    one per price change)."""
    while True:
        html = http.get(path).text
        counts = [n for _, _, n in sparks(html).values()]
        if counts and min(counts) >= points:
            return html
        assert time.monotonic() < deadline, f"{path}: sparklines of {counts} points"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def memory_server() -> Iterator[AppServer]:
    server = AppServer({"POLL_TIMEOUT": "1"})
    server.start()
    yield server
    server.stop()


def test_dashboard_and_market_rows_draw_sparklines_before_any_script(
    memory_server: AppServer,
) -> None:
    with httpx.Client(base_url=memory_server.base, timeout=10) as http:
        deadline = time.monotonic() + 20
        dashboard = wait_for_lines(http, "/", 3, deadline)
        market = wait_for_lines(http, "/market", 3, deadline)
        for html, symbols in ((dashboard, DEFAULT_WATCHLIST), (market, DEFAULT_BOARD)):
            drawn = sparks(html)
            assert sorted(drawn) == sorted(symbols)
            for symbol, (_, label, n) in drawn.items():
                match = LABEL.fullmatch(label)
                assert match is not None and match["symbol"] == symbol, label
                assert n <= MAX_POINTS
        assert '<th scope="col" class="c-spark">Today</th>' in dashboard
        # The stock page's quote row has none: only the rows of the two lists do.
        assert "c-spark" not in http.get("/stock/TCS").text
        # What the live transports carry per quote is the plain row: no sparkline in it.
        poll = http.get("/api/poll", params={"symbols": "TCS,INFY", "format": "html"}).json()
        assert poll["html"].count("<tr id=") == 2
        assert "<svg" not in poll["html"] and "spark" not in poll["html"]


def test_redis_history_is_sampled_to_max_points_for_every_row(
    redis_url: str, redis_server: object
) -> None:
    """A history the page did not write (another replica's fetcher, long ago): 500 points at
    1,000.00 and up, then the live prices. The page draws it, sampled to MAX_POINTS."""
    now_ms = int(time.time() * 1000)
    seeded = [
        b"%d %d.%02d" % (now_ms - 600_000 + i * 1000, 1000 + i // 100, i % 100) for i in range(500)
    ]
    with redis.Redis.from_url(redis_url) as r:
        r.rpush("history:TCS", *seeded)
    server = AppServer({"REDIS_URL": redis_url, "LEASE_TTL": "1"})
    server.start()
    try:
        with httpx.Client(base_url=server.base, timeout=10) as http:
            http.cookies.set("watchlist", "TCS,INFY")
            html = wait_for_lines(http, "/", 2, time.monotonic() + 20)
            drawn = sparks(html)
            assert sorted(drawn) == ["INFY", "TCS"]
            _, label, n = drawn["TCS"]
            assert n == MAX_POINTS
            assert label.startswith("TCS today: from 1,000.00 to "), label
            assert re.search(r'data-spark="TCS" data-lo="1000\.0" ', html)
    finally:
        server.stop()
