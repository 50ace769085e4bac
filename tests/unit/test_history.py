"""The chart's recent-price recorder and its SVG geometry."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from app.chart import HEIGHT, PAD, WIDTH, geometry
from app.history import History
from app.models import encode_quote
from app.poller import encode_update
from app.pubsub import open_backend
from app.pubsub.base import UPDATES_CHANNEL
from tests.support import eventually
from tests.unit.test_models import make_quote


def test_records_newer_quotes_only_and_one_point_per_source_time() -> None:
    history = History(bus=None, per_symbol=3)  # type: ignore[arg-type]
    history.record(make_quote(seq=1, source_time=1000, price=Decimal("10")))
    history.record(make_quote(seq=2, source_time=2000, price=Decimal("11")))
    history.record(make_quote(seq=1, source_time=3000, price=Decimal("99")))  # older seq
    history.record(make_quote(seq=3, source_time=2000, price=Decimal("12")))  # same time
    assert history.points("TCS") == [(1000, Decimal("10")), (2000, Decimal("12"))]
    for seq in (4, 5, 6):
        history.record(make_quote(seq=seq, source_time=seq * 1000, price=Decimal(seq)))
    assert [t for t, _ in history.points("TCS")] == [4000, 5000, 6000]  # bounded per symbol
    assert history.points("INFY") == []


def test_forgets_the_least_recently_updated_symbol_beyond_the_cap() -> None:
    history = History(bus=None, max_symbols=2)  # type: ignore[arg-type]
    for symbol in ("A", "B", "A", "C"):
        history.record(make_quote(symbol=symbol, seq=len(history.points(symbol)) + 1))
    assert history.points("B") == [] and history.points("A") and history.points("C")


async def test_listens_on_the_bus_of_its_own() -> None:
    async with open_backend("memory://", registry_ttl=5, client_name="t") as backend:
        history = History(backend.bus)
        task = asyncio.create_task(history.run())
        quote = encode_quote(make_quote(seq=7)).decode()

        async def recorded() -> bool:
            await backend.bus.publish(UPDATES_CHANNEL, encode_update(10, [quote]))
            return bool(history.points("TCS"))

        await eventually(recorded, 5, "the recorder to see a published quote")
        history.dispatch(b"not json")  # ignored, never raises
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


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
