"""The fan-out: one frame per group of clients watching the same symbols, written at once."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import orjson

from app.core.fanout import Fanout
from app.core.outbox import Outbox
from app.core.wire import FrameKind, WireFormat
from app.formats import JSON_FORMAT, JsonFormat
from app.models import FeedStatus, Quote
from tests.core.sinks import Socket, tag, untag
from tests.unit.test_models import make_quote


def client(
    fanout: Fanout, symbols: list[str], fmt: WireFormat = JSON_FORMAT
) -> tuple[Outbox, Socket]:
    box, sock = Outbox(fmt), Socket()
    box.sink = sock
    box.symbols.update(symbols)
    fanout.regroup(box)
    return box, sock


def payload(frame: bytes) -> Any:
    return orjson.loads(untag(frame))


class Counting(JsonFormat):
    def __init__(self) -> None:
        self.encodes = 0

    def encode(self, quote: Quote) -> bytes:
        self.encodes += 1
        return super().encode(quote)


class Symbols:
    """A second wire format: each quote as its bare symbol."""

    name = "symbols"

    def encode(self, quote: Quote) -> bytes:
        return quote.symbol.encode()

    def frame(self, kind: FrameKind, encoded: Sequence[bytes]) -> bytes:
        return b" ".join(encoded)

    def status(self, status: FeedStatus) -> None:
        return None

    def fresh(self, at: int, now: int, stale_after: int, stale: dict[str, int]) -> bytes:
        return b"fresh %d" % at

    def rejected(self, symbol: str, reason: str, source: str | None) -> None:
        return None

    def reconnect(self, delay_ms: int) -> None:
        return None


def test_clients_watching_the_same_symbols_share_one_frame_object() -> None:
    fmt = Counting()
    fanout = Fanout()
    dash = [client(fanout, ["TCS", "INFY"], fmt) for _ in range(50)]
    solo, solo_sock = client(fanout, ["INFY"], fmt)
    assert fanout.cohorts == 2
    unwatched = make_quote(symbol="WIPRO", seq=1)
    fanout.publish([make_quote(symbol="TCS", seq=1), make_quote(symbol="INFY", seq=1), unwatched])
    frames = {id(sock.frames[0]) for _, sock in dash}
    assert len(frames) == 1  # built and prepared (framed) once for all 50
    [frame] = dash[0][1].frames
    assert frame == tag(fmt.frame("batch", [encode_json("INFY"), encode_json("TCS")]))
    assert [q["symbol"] for q in payload(frame)["quotes"]] == ["INFY", "TCS"]
    assert payload(solo_sock.frames[0])["type"] == "quote"
    assert fmt.encodes == 2  # each watched quote once, whatever the number of clients and groups
    assert fanout.delivered == 50 * 2 + 1 and fanout.frames_fast == 51
    assert fanout.fanout_lag.count == 1  # one publish, timed to its last frame


def encode_json(symbol: str) -> bytes:
    return JSON_FORMAT.encode(make_quote(symbol=symbol, seq=1))


def test_cohorts_that_differ_only_in_unchanged_symbols_share_one_frame() -> None:
    """Random watchlists make every client a cohort of its own: a quote must still be encoded
    and framed once per format, not once per cohort."""
    fmt = Counting()
    fanout = Fanout()
    mixed = [client(fanout, ["TCS", other], fmt) for other in ("INFY", "WIPRO", "ITC")]
    _, bare = client(fanout, ["TCS", "ITC"], Symbols())
    assert fanout.cohorts == 4
    fanout.publish([make_quote(symbol="TCS", seq=1)])  # one quote: the stream's common case
    assert len({id(sock.frames[0]) for _, sock in mixed}) == 1 and fmt.encodes == 1
    assert payload(mixed[0][1].frames[0])["quote"]["symbol"] == "TCS"
    assert bare.frames == [tag(b"TCS")]
    fanout.publish([make_quote(symbol="TCS", seq=2), make_quote(symbol="INFY", seq=2)])
    both, (tcs_a, tcs_b) = mixed[0][1].frames[1], (sock.frames[1] for _, sock in mixed[1:])
    assert tcs_a is tcs_b and tcs_a is not both
    assert [q["symbol"] for q in payload(both)["quotes"]] == ["INFY", "TCS"]
    assert payload(tcs_a)["quote"]["seq"] == 2 and fmt.encodes == 3
    assert fanout.delivered == 4 + 5 and fanout.frames_fast == 4 + 4


def test_a_paused_client_gets_the_latest_queued_and_the_others_still_get_frames() -> None:
    fanout = Fanout()
    (fast, fast_sock), (slow, slow_sock) = (client(fanout, ["TCS"]) for _ in range(2))
    slow_sock.paused = True
    for seq in (1, 2, 3):
        fanout.publish([make_quote(seq=seq)])
    assert [payload(f)["quote"]["seq"] for f in fast_sock.frames] == [1, 2, 3]
    assert slow_sock.frames == []
    # Once something is queued, later quotes queue behind it (never overtake), conflated.
    slow_sock.paused = False
    fanout.publish([make_quote(seq=4)])
    assert slow_sock.frames == []
    [queued] = slow.drain()
    assert orjson.loads(queued)["quote"]["seq"] == 4 and slow.conflated == 3
    fanout.publish([make_quote(seq=5)])
    assert len(slow_sock.frames) == 1 and fast.drain() == []


def test_groups_follow_subscription_changes_and_count_watchers() -> None:
    fanout = Fanout()
    a, _ = client(fanout, ["TCS", "INFY"])
    b, b_sock = client(fanout, ["TCS", "INFY"])
    client(fanout, ["TCS", "INFY"], Symbols())
    assert fanout.cohorts == 2 and fanout.counts() == {"TCS": 3, "INFY": 3}
    b.symbols.discard("INFY")
    fanout.regroup(b)
    assert fanout.cohorts == 3 and fanout.counts() == {"TCS": 3, "INFY": 2}
    watching = set(fanout.members_watching("INFY"))
    assert b not in watching and a in watching
    fanout.publish([make_quote(symbol="INFY", seq=1)])
    assert b_sock.frames == []
    a.symbols.clear()
    fanout.regroup(a)
    b.symbols.clear()
    fanout.regroup(b)
    assert fanout.cohorts == 1 and fanout.counts() == {"TCS": 1, "INFY": 1}


def test_clients_without_the_fast_path_get_updates_queued_for_their_writer() -> None:
    fanout = Fanout()
    box = Outbox(JSON_FORMAT)
    box.symbols.add("TCS")
    fanout.regroup(box)
    owed: list[bool] = []
    box.on_owed = lambda: owed.append(True)
    fanout.publish([make_quote(seq=1, published_at=1234)])
    assert owed and box.owes()
    [frame] = box.drain()
    assert orjson.loads(frame)["quote"]["seq"] == 1 and box.batch_published_at == 1234


async def test_messages_read_in_one_loop_turn_go_out_as_one_frame_per_cohort() -> None:
    fanout = Fanout()
    _, sock = client(fanout, ["TCS", "INFY"])
    # Three bus messages read at once (the loop fell behind): held until the turn ends...
    fanout.publish_soon([make_quote(symbol="TCS", seq=1)])
    fanout.publish_soon([make_quote(symbol="INFY", seq=1)])
    fanout.publish_soon([make_quote(symbol="TCS", seq=2)])
    assert sock.frames == []
    await asyncio.sleep(0)
    # ...then one write, the newest quote per symbol.
    [frame] = sock.frames
    assert sorted((q["symbol"], q["seq"]) for q in payload(frame)["quotes"]) == [
        ("INFY", 1), ("TCS", 2),
    ]  # fmt: skip
    assert fanout.merged == 1


async def test_a_client_joining_while_quotes_are_held_gets_them_in_its_snapshot_only() -> None:
    fanout = Fanout()
    _, old_sock = client(fanout, ["TCS"])
    fanout.publish_soon([make_quote(symbol="TCS", seq=5)])
    # A subscribe in the same turn: the held quote goes to the members it was published for
    # before the newcomer joins (the newcomer's snapshot already holds seq 5: no duplicate).
    _, new_sock = client(fanout, ["TCS"])
    await asyncio.sleep(0)
    assert [payload(f)["quote"]["seq"] for f in old_sock.frames] == [5]
    assert new_sock.frames == []


def test_a_ticks_batch_goes_out_as_one_frame_per_cohort_in_each_format() -> None:
    """A message of more than a few quotes (a tick) is framed per cohort: all of its symbols
    changed (picked in one step), or some; each quote still encoded once per format."""
    fmt = Counting()
    fanout = Fanout()
    tick = [make_quote(symbol=f"S{i:02d}", seq=1) for i in range(12)]
    (_, every), (_, some) = client(fanout, ["S00", "S05"], fmt), client(fanout, ["S01", "X"], fmt)
    (_, bare), (late, paused) = (
        client(fanout, ["S00", "S01"], Symbols()),
        client(fanout, ["S05"], fmt),
    )
    paused.paused = True
    fanout.publish(tick)
    assert [q["symbol"] for q in payload(every.frames[0])["quotes"]] == ["S00", "S05"]
    assert payload(some.frames[0])["quote"]["symbol"] == "S01"
    assert bare.frames == [tag(b"S00 S01")] and fmt.encodes == 3
    assert paused.frames == [] and [orjson.loads(m)["quote"]["symbol"] for m in late.drain()] == [
        "S05"
    ]
    assert fanout.delivered == 2 + 1 + 2 + 1 and fanout.frames_fast == 3
