"""Sparklines: the SVG builder (down-sampling, flat and one-point lines, decimal prices, labels),
the sampled read that never fails a page, and the live row that carries no sparkline."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from app.formats import HtmlFormat
from app.history import History
from app.pubsub import open_backend
from app.pubsub.memory import MemoryHistoryStore
from app.rendering import Renderer
from app.sparkline import HEIGHT, MAX_POINTS, PAD, WIDTH, build, downsample, label, sparklines
from tests.support import free_port
from tests.unit.test_models import make_quote

NOW = datetime(2023, 11, 14, 12, 0, tzinfo=UTC)  # the same day as make_quote's source time
T = 1_700_000_000_000  # 2023-11-14 22:13:20 UTC: 15 Nov 03:43 in Kolkata, NSE's zone


def xy(polyline: str) -> list[tuple[float, float]]:
    return [(float(a), float(b)) for a, b in (pair.split(",") for pair in polyline.split())]


def test_downsample_keeps_the_ends_and_spreads_evenly() -> None:
    points = [(T + i, Decimal(i)) for i in range(1000)]
    kept = downsample(points)
    assert len(kept) == MAX_POINTS
    assert kept[0] == points[0] and kept[-1] == points[-1]
    gaps = {b[0] - a[0] for a, b in zip(kept, kept[1:], strict=False)}
    assert gaps <= {16, 17}  # 999 / 59 = 16.9: even to within one position
    assert downsample(points[:MAX_POINTS]) == points[:MAX_POINTS]
    assert downsample(points[:5], 2) == [points[0], points[4]]
    with pytest.raises(ValueError, match="at least 2 points"):
        downsample(points, 1)


def test_a_long_history_draws_at_most_max_points_in_the_box() -> None:
    points = [(T + i * 1000, Decimal("100") + Decimal(i % 7)) for i in range(3000)]
    spark = build("TCS", points, now=NOW)
    assert spark is not None
    drawn = xy(spark.polyline)
    assert len(drawn) == MAX_POINTS
    assert drawn[0][0] == PAD and drawn[-1][0] == WIDTH - PAD
    assert all(PAD <= x <= WIDTH - PAD and PAD <= y <= HEIGHT - PAD for x, y in drawn)
    assert [x for x, _ in drawn] == sorted(x for x, _ in drawn)  # by time, left to right
    assert spark.dot == drawn[-1]


def test_the_line_scales_high_at_the_top_and_labels_the_move_in_words() -> None:
    points = [(T, Decimal("3120")), (T + 1000, Decimal("3160")), (T + 2000, Decimal("3150"))]
    spark = build("TCS", points, now=NOW)
    assert spark is not None
    assert xy(spark.polyline) == [(PAD, HEIGHT - PAD), (WIDTH / 2, PAD), (WIDTH - PAD, 7.0)]
    assert spark.direction == "up"
    assert spark.label == "TCS today: from 3,120.00 to 3,150.00, up 0.96 %"
    assert (spark.lo, spark.hi, spark.t0, spark.t1) == (3120.0, 3160.0, T, T + 2000)
    falling = [(T, Decimal("3150")), (T + 1000, Decimal("3160")), (T + 2000, Decimal("3120"))]
    down = build("TCS", falling, now=NOW)
    assert down is not None and down.direction == "down"
    assert down.label == "TCS today: from 3,150.00 to 3,120.00, down 0.95 %"


def test_a_flat_line_is_level_across_the_middle() -> None:
    points = [(T + i, Decimal("250.5")) for i in range(5)]
    spark = build("INFY", points, now=NOW)
    assert spark is not None
    assert {y for _, y in xy(spark.polyline)} == {HEIGHT / 2}
    assert spark.direction == "flat"
    assert spark.label == "INFY today: from 250.50 to 250.50, unchanged"


def test_a_single_point_is_a_dot_at_the_right_edge() -> None:
    spark = build("TCS", [(T, Decimal("3150.05"))], now=NOW)
    assert spark is not None
    assert spark.dot == (WIDTH - PAD, HEIGHT / 2)
    assert spark.label == "TCS today: 3,150.05, the only price so far"


def test_no_history_and_no_quote_is_no_sparkline_but_a_quote_alone_is_one_point() -> None:
    assert build("TCS", []) is None
    quote = make_quote(price=Decimal("3150.05"), source_time=T)
    spark = build("TCS", [], quote, now=NOW)
    assert spark is not None and len(xy(spark.polyline)) == 1 and spark.t1 == T


def test_the_latest_quote_extends_the_history_only_when_newer() -> None:
    points = [(T, Decimal("10")), (T + 1000, Decimal("11"))]
    newer = build("TCS", points, make_quote(price=Decimal("12"), source_time=T + 2000), now=NOW)
    assert newer is not None and newer.t1 == T + 2000
    assert newer.label.endswith("to 12.00, up 20.00 %")
    same = build("TCS", points, make_quote(price=Decimal("99"), source_time=T + 1000), now=NOW)
    assert same is not None and same.t1 == T + 1000 and "99" not in same.label


def test_decimal_prices_stay_exact_where_words_and_data_need_them() -> None:
    points = [(T, Decimal("0.10000000000000000555")), (T + 1, Decimal("0.30"))]
    spark = build("PENNY", points, now=NOW)
    assert spark is not None
    assert spark.first == "0.10000000000000000555"  # the script's "from", not a float's repr
    assert spark.label == "PENNY today: from 0.10 to 0.30, up 200.00 %"
    big = build("BRK.A", [(T, Decimal("612345.67")), (T + 1, Decimal("612345.68"))], now=NOW)
    assert big is not None and big.direction == "up"  # a one-cent move on a large price
    assert big.label == "BRK.A today: from 612,345.67 to 612,345.68, up 0.00 %"
    assert {y for _, y in xy(big.polyline)} == {PAD, HEIGHT - PAD}


def test_the_day_is_said_in_the_exchanges_zone() -> None:
    # T is 15 Nov in Kolkata: on 15 Nov (UTC noon) that is today; on 16 Nov it is not.
    quote = make_quote(source_time=T)  # NSE
    today = build("TCS", [], quote, now=datetime(2023, 11, 15, 12, tzinfo=UTC))
    assert today is not None and today.day == "today"
    later = build("TCS", [], quote, now=datetime(2023, 11, 16, 12, tzinfo=UTC))
    assert later is not None and later.day == "on Wed 15 Nov"
    assert later.label.startswith("TCS on Wed 15 Nov: ")
    assert label("X", "today", Decimal(0), Decimal(1), 2) == "X today: from 0.00 to 1.00, up"


class Counting:
    """The in-memory store, counting the reads a page makes."""

    def __init__(self, inner: MemoryHistoryStore) -> None:
        self.inner = inner
        self.calls: list[tuple[list[str], int]] = []

    async def read(self, symbol: str) -> list[bytes]:
        self.calls.append(([symbol], 0))
        return await self.inner.read(symbol)

    async def sample(self, symbols: Sequence[str], points: int) -> list[list[bytes]]:
        self.calls.append((list(symbols), points))
        return await self.inner.sample(symbols, points)


async def test_a_page_reads_every_rows_line_in_one_sample() -> None:
    memory = MemoryHistoryStore(3000, ttl=60)
    for i in range(500):
        memory.append({"TCS": b"%d %d.5" % (T + i, 100 + i % 3)})
    store = Counting(memory)
    quotes = {"TCS": make_quote(source_time=T + 10_000)}
    found = await sparklines(History(store), ["TCS", "INFY", "NOPE"], quotes)
    assert store.calls == [(["TCS", "INFY", "NOPE"], MAX_POINTS)]
    assert found["TCS"] is not None and len(xy(found["TCS"].polyline)) == MAX_POINTS
    assert found["INFY"] is None and found["NOPE"] is None


async def test_a_reload_flood_reads_each_line_once_a_second() -> None:
    memory = MemoryHistoryStore(3000, ttl=60)
    memory.append({"TCS": b"%d 100.5" % T, "INFY": b"%d 200.5" % T})
    store, now = Counting(memory), [1000.0]
    history = History(store, clock=lambda: now[0])
    for _ in range(50):  # fifty renders within the second: one read
        await history.samples(["TCS", "INFY"], MAX_POINTS)
    await history.samples(["TCS", "WIPRO"], MAX_POINTS)  # only the symbol not read yet
    assert store.calls == [(["TCS", "INFY"], MAX_POINTS), (["WIPRO"], MAX_POINTS)]
    now[0] += 1.0  # a second later the line is read again (it has grown since)
    memory.append({"TCS": b"%d 101.5" % (T + 2000)})
    assert len((await history.samples(["TCS"], MAX_POINTS))["TCS"]) == 2
    assert len(store.calls) == 3


async def test_an_unreachable_store_gives_rows_without_sparklines() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    async with open_backend(url, registry_ttl=5, client_name="t") as backend:
        found = await sparklines(History(backend.history), ["TCS"], {"TCS": make_quote()})
    # No history, but the latest quote still draws its one point.
    assert found["TCS"] is not None and found["TCS"].label.endswith("the only price so far")


SPARK_CELL = re.compile(r'  <td class="spark c-spark"[^\n]*</td>\n')


def test_the_live_row_is_the_page_row_without_its_sparkline_cell() -> None:
    """What a WebSocket or long-poll frame carries per quote is unchanged by sparklines: the
    page's row with its sparkline is the live row plus one page-only cell, nothing else."""
    renderer = Renderer()
    quote = make_quote()
    live = HtmlFormat(renderer).encode(quote)
    assert b"<svg" not in live and b"spark" not in live
    spark = build("TCS", [(T - 1000, Decimal("3149")), (T, Decimal("3150.05"))], quote)
    page = renderer.env.get_template("_quote_row.html").render(
        symbol="TCS", q=quote, oob=True, sparks={"TCS": spark}
    )
    assert len(SPARK_CELL.findall(page)) == 1 and "<svg" in page
    assert SPARK_CELL.sub("", page).encode() == live
    empty = renderer.env.get_template("_quote_row.html").render(
        symbol="TCS", q=quote, oob=True, sparks={}
    )
    assert "<svg" not in empty and SPARK_CELL.sub("", empty).encode() == live
