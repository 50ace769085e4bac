"""The chart's history: point codec, the in-memory store's bounds, the fetcher's writes, and the
reader that never fails a page; and the chart's SVG geometry."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime
from decimal import Decimal

import orjson

from app.chart import HEIGHT, PAD, WIDTH, geometry, time_axis
from app.feeds.simulated import SimulatedFeed
from app.fetcher import Fetcher
from app.history import UNAVAILABLE, History, Line, decode_points, encode_point
from app.pubsub import open_backend
from app.pubsub.memory import MemoryHistoryStore
from tests.support import free_port
from tests.unit.test_fetcher import collect, drain
from tests.unit.test_models import make_quote


def test_points_round_trip_one_per_source_time_and_skip_garbage() -> None:
    entry = encode_point(make_quote(source_time=1000, price=Decimal("3150.05")))
    assert entry == b"1000 3150.05"
    entries = [
        entry,
        b"2000 11",
        b"2000 12",  # same source time: corrects that point
        b"1500 13",  # earlier source time (a provider's clock): corrects the last point too
        b"garbage",
        b"3000 NaN",
        b"x 1",
        b"3000 14.5",
    ]
    assert decode_points(entries) == [
        (1000, Decimal("3150.05")),
        (2000, Decimal("13")),
        (3000, Decimal("14.5")),
    ]
    assert decode_points([]) == []


async def test_memory_history_bounds_points_and_symbols_and_expires_idle_ones() -> None:
    now = [0.0]
    store = MemoryHistoryStore(2, ttl=10, max_symbols=2, clock=lambda: now[0])
    store.append({"A": b"1", "B": b"1"})
    store.append({"A": b"2"})
    store.append({"A": b"3"})
    assert await store.read("A") == [b"2", b"3"]  # newest 2 points
    store.append({"C": b"1"})  # a third symbol: B, the least recently appended, goes
    assert await store.read("B") == [] and await store.read("C") == [b"1"]
    now[0] = 9.0
    store.append({"C": b"2"})
    now[0] = 10.5  # A idle for 10.5 s: expired; C appended 1.5 s ago: kept
    assert await store.read("A") == []
    assert await store.read("C") == [b"1", b"2"]
    now[0] = 25.0
    store.append({"D": b"1"})  # an append sweeps the expired ones too
    assert await store.read("C") == [] and await store.read("D") == [b"1"]


async def test_the_line_is_what_the_fetcher_published() -> None:
    async with open_backend("memory://", registry_ttl=5, client_name="t") as backend:
        queue, task = await collect(backend)
        seconds = itertools.count(1_700_000_000)  # one second later at every fetch
        feed = SimulatedFeed(seed=3, clock=lambda: next(seconds))
        fetcher = Fetcher(feed, backend, interval=1.0, board=["TCS", "INFY"])
        for _ in range(6):
            await fetcher.tick()
        published = [
            (q["source_time"], Decimal(q["price"]))
            for message in await drain(backend, queue)
            for q in orjson.loads(message.data)["quotes"]
            if q["symbol"] == "TCS"
        ]
        history = History(backend.history)
        line = await history.line("TCS")
        assert line.note is None
        assert len(line.points) >= 3
        assert line.points == published
        assert (await history.line("NOPE")) == Line()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_an_unreachable_store_gives_an_empty_line_with_a_note() -> None:
    # A real Redis client against a port where nothing listens: the boundary's own error path.
    url = f"redis://127.0.0.1:{free_port()}/0"
    async with open_backend(url, registry_ttl=5, client_name="t") as backend:
        line = await History(backend.history).line("TCS")
    assert line == Line([], UNAVAILABLE)


def test_geometry_scales_into_the_box_with_the_previous_close() -> None:
    points = [(0, Decimal("10")), (500, Decimal("12")), (1000, Decimal("11"))]
    chart = geometry(points, prev_close=Decimal("8"))
    xy = [tuple(map(float, pair.split(","))) for pair in chart.polyline.split()]
    assert [x for x, _ in xy] == [PAD, WIDTH / 2, WIDTH - PAD]
    assert xy[1][1] == PAD  # the high is at the top
    assert chart.prev_y == HEIGHT - PAD  # the previous close is the low here
    assert chart.dot == xy[-1]
    assert geometry([], None).polyline == ""
    single = geometry([(5, Decimal("3"))], None)
    assert single.dot[0] == WIDTH - PAD


def test_the_time_axis_shows_seconds_when_minutes_cannot_tell_its_labels_apart() -> None:
    t0 = int(datetime(2026, 12, 1, 9, 0, 5, tzinfo=UTC).timestamp() * 1000)
    short = [(t0, Decimal("1")), (t0 + 40_000, Decimal("2"))]
    assert time_axis(short, "NSE") == ("14:30:05", "14:30:25", "14:30:45 IST")
    long = [(t0, Decimal("1")), (t0 + 2 * 3600_000, Decimal("2"))]
    assert time_axis(long, "NYSE") == ("04:00", "05:00", "06:00 EST")
    assert time_axis([], "NSE") == ("", "", "")
