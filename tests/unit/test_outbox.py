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
