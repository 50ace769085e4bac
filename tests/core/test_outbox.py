from __future__ import annotations

import random
from collections.abc import Callable

import orjson

from app.core.outbox import Outbox
from app.formats import JSON_FORMAT
from tests.core.sinks import Socket, untag
from tests.unit.test_models import make_quote


def frames(outbox: Outbox) -> list[dict[str, object]]:
    return [orjson.loads(f) for f in outbox.drain()]


def test_keeps_only_the_latest_quote_per_symbol() -> None:
    box = Outbox(JSON_FORMAT)
    box.symbols.add("TCS")
    for seq in (1, 2, 3):
        box.offer("TCS", JSON_FORMAT.encode(make_quote(seq=seq)), 1000)
    out = frames(box)
    assert out == [{"type": "quote", "quote": orjson.loads(JSON_FORMAT.encode(make_quote(seq=3)))}]
    assert box.conflated == 2
    assert frames(box) == []


def test_snapshot_replaces_a_pending_update_and_control_keeps_order() -> None:
    box = Outbox(JSON_FORMAT)
    box.symbols.add("TCS")
    box.offer("TCS", b"pending", 1000)
    box.offer_control(b'{"type":"subscribed"}')
    box.offer_snapshot({"TCS": JSON_FORMAT.encode(make_quote(seq=2))})
    out = frames(box)
    assert [f["type"] for f in out] == ["subscribed", "snapshot"]


def test_ignores_symbols_not_watched() -> None:
    box = Outbox(JSON_FORMAT)
    box.offer("TCS", b"x", 1000)
    assert box.offer_snapshot({"TCS": JSON_FORMAT.encode(make_quote())}) == 0
    assert box.drain() == []


def test_control_backlog_is_bounded_in_count_and_what_was_owed_is_dropped() -> None:
    box = Outbox(JSON_FORMAT, max_control=3)
    box.symbols.add("TCS")
    box.offer("TCS", b"quote", 1000)
    for i in range(3):
        box.offer_control(b"%d" % i)
    assert not box.overflowed
    box.offer_control(b"3")
    assert box.overflowed
    assert box.drain() == []  # the writer closes it with 1013 and sends none of it
    box.offer_control(b"4")
    assert box.drain() == []


def test_control_backlog_is_bounded_in_bytes() -> None:
    box = Outbox(JSON_FORMAT, max_bytes=100_000)
    box.offer_control(b"x" * 60_000)
    assert box.drain() == [b"x" * 60_000]  # sent: its bytes no longer count
    box.offer_control(b"y" * 60_000)
    assert not box.overflowed
    box.offer_control("é".encode() * 30_000)  # bytes, not characters: 60,000 of them
    assert box.overflowed and box.drain() == []


def send_now(box: Outbox, frame: bytes) -> bool:
    """What the fan-out does with an outbox: write through `direct` when it has one."""
    direct = box.direct
    if direct is None:
        return False
    direct(frame)
    return True


def test_direct_writes_only_when_nothing_is_owed_before_the_frame() -> None:
    box = Outbox(JSON_FORMAT)
    box.symbols.add("TCS")
    sock = Socket()
    assert not send_now(box, b"no sink yet")
    box.sink = sock
    assert send_now(box, b"1") and sock.frames == [b"1"]

    sock.paused = True  # the socket is paused: the frame is not written
    assert not send_now(box, b"2") and sock.frames == [b"1"]

    sock.paused = False
    box.offer_control(b'{"type":"pong"}')  # a control message is owed first
    assert not send_now(box, b"3")
    box.drain()
    box.offer("TCS", b"pending", 1000)  # so is a queued update
    assert not send_now(box, b"4")
    box.drain()
    box.sending = True  # an awaited send is in progress: order first
    assert not send_now(box, b"5")
    box.sending = False
    box.close_after(1000, "bye")
    assert not send_now(box, b"6")
    assert sock.frames == [b"1"]


def test_write_owed_now_writes_in_order_as_far_as_the_socket_takes_it() -> None:
    box = Outbox(JSON_FORMAT)
    box.symbols.add("TCS")
    sock = Socket(room=1)
    box.sink = sock
    box.offer_control(b'{"type":"a"}')
    box.offer_control(b'{"type":"b"}')
    box.offer("TCS", JSON_FORMAT.encode(make_quote(seq=1)), 1000)
    assert box.write_owed_now() == (1, False) and len(sock.frames) == 1
    assert box.batch_published_at == 0  # no batch went out: no lag to record
    sock.room = 5
    assert box.write_owed_now() == (2, True) and box.batch_published_at == 1000
    # Each went through the sink's own preparation (its framing), in order.
    kinds = [orjson.loads(untag(f))["type"] for f in sock.frames]
    assert kinds == ["a", "b", "quote"] and not box.owes()


def test_direct_is_the_sinks_write_exactly_while_a_live_payload_may_go_now() -> None:
    """The fan-out writes through `direct` without checking anything itself: after any sequence
    of what can happen to a connection, it must be set exactly when nothing stands in the way
    (a sink that takes frames, nothing queued or being sent before, no close, no overflow)."""
    rng = random.Random(7)
    for _ in range(200):
        box = Outbox(JSON_FORMAT, max_control=4)
        box.symbols.add("TCS")
        sock = Socket()
        steps: list[str] = []
        for _ in range(30):
            step = rng.choice(STEPS)
            steps.append(step)
            ACTIONS[step](box, sock)
            may_go = (
                box.sink is not None
                and not sock.paused
                and not (box._pending or box._control)  # what is queued goes first
                and not box.sending
                and box.closing is None
                and not box.overflowed
            )
            assert (box.direct is not None) == may_go, steps
            if may_go:
                before = len(sock.frames)
                send_now(box, b"live")
                assert len(sock.frames) == before + 1, steps


ACTIONS: dict[str, Callable[[Outbox, Socket], object]] = {
    "attach": lambda box, sock: setattr(box, "sink", sock),
    "detach": lambda box, sock: setattr(box, "sink", None),
    "pause": lambda box, sock: setattr(sock, "paused", True),
    "resume": lambda box, sock: setattr(sock, "paused", False),
    "room 1": lambda box, sock: setattr(sock, "room", 1),
    "room any": lambda box, sock: setattr(sock, "room", None),
    "offer": lambda box, sock: box.offer("TCS", b"q", 1000),
    "control": lambda box, sock: box.offer_control(b"c"),
    "snapshot": lambda box, sock: box.offer_snapshot({"TCS": b"s"}),
    "note": lambda box, sock: box.offer_note(b"n", {}),
    "forget": lambda box, sock: box.forget(["TCS"]),
    "write owed": lambda box, sock: box.write_owed_now(),
    "drain": lambda box, sock: box.drain(),
    "sending": lambda box, sock: setattr(box, "sending", True),
    "sent": lambda box, sock: setattr(box, "sending", False),
    "close after": lambda box, sock: box.close_after(1000, "bye"),
    "clear": lambda box, sock: box.clear(),
}
STEPS = sorted(ACTIONS)
