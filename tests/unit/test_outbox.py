from __future__ import annotations

import orjson

from app.rendering import JSON_FORMAT
from app.ws.outbox import Outbox
from tests.unit.test_models import make_quote


def frames(outbox: Outbox) -> list[dict[str, object]]:
    return [orjson.loads(f) for f in outbox.drain()]


def test_keeps_only_the_latest_quote_per_symbol() -> None:
    box = Outbox(JSON_FORMAT)
    box.symbols.add("TCS")
    for seq in (1, 2, 3):
        q = make_quote(seq=seq)
        box.offer(q, JSON_FORMAT.encode(q))
    out = frames(box)
    assert out == [{"type": "quote", "quote": orjson.loads(JSON_FORMAT.encode(make_quote(seq=3)))}]
    assert box.conflated == 2
    assert frames(box) == []


def test_never_older_after_newer() -> None:
    box = Outbox(JSON_FORMAT)
    box.symbols.add("TCS")
    box.offer(make_quote(seq=5), "new")
    box.drain()
    box.offer(make_quote(seq=4), "old")
    box.offer(make_quote(seq=5), "dup")
    box.offer_snapshot([make_quote(seq=5)])
    assert box.drain() == []


def test_snapshot_replaces_an_older_pending_update_and_control_keeps_order() -> None:
    box = Outbox(JSON_FORMAT)
    box.symbols.add("TCS")
    box.offer(make_quote(seq=1), "pending")
    box.offer_control('{"type":"subscribed"}')
    box.offer_snapshot([make_quote(seq=2)])
    out = frames(box)
    assert [f["type"] for f in out] == ["subscribed", "snapshot"]


def test_ignores_symbols_not_watched() -> None:
    box = Outbox(JSON_FORMAT)
    box.offer(make_quote(), "x")
    assert box.drain() == []


def test_control_backlog_is_bounded() -> None:
    box = Outbox(JSON_FORMAT, max_control=3)
    for i in range(5):
        box.offer_control(str(i))
    assert box.overflowed
    assert box.drain() == ["0", "1", "2"]


def test_flush_writes_one_frame_directly_and_wakes_the_writer_only_when_it_must() -> None:
    box = Outbox(JSON_FORMAT)
    box.symbols.update(("TCS", "INFY"))
    written: list[str] = []
    accept = True

    def direct(frame: str) -> bool:
        if accept:
            written.append(frame)
        return accept

    box.direct = direct
    box.offer(make_quote(seq=1, published_at=1000), "1")
    box.offer(make_quote(symbol="INFY", seq=1, published_at=1200), "2")
    assert not box._wake.is_set()  # the hub flushes; the writer task sleeps on
    assert box.flush() == 1000
    assert [orjson.loads(f)["type"] for f in written] == ["batch"] and box.drain() == []
    assert box.flush() == 0  # nothing pending

    accept = False  # the socket is paused: the writer's awaited send takes over
    box.offer(make_quote(seq=2, published_at=3000), "3")
    assert box.flush() == 0 and box._wake.is_set()
    assert len(frames(box)) == 1

    box.busy = True  # the writer is mid-send: order first, so it drains this too
    accept = True
    box.offer(make_quote(seq=3, published_at=4000), "4")
    assert box.flush() == 0 and box._wake.is_set() and len(written) == 1
