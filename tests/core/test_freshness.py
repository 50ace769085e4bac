"""Freshness per symbol: confirmations heard on the bus, and the conflated notes that tell them."""

from __future__ import annotations

import orjson

from app.core.fanout import Fanout
from app.core.freshness import Freshness, stale_after_ms
from app.core.outbox import Outbox
from app.formats import JSON_FORMAT
from tests.core.sinks import Socket, untag
from tests.unit.test_models import make_quote

T0 = 1_764_000_000_000


def client(fanout: Fanout, symbols: list[str]) -> tuple[Outbox, Socket]:
    outbox, sock = Outbox(JSON_FORMAT), Socket()
    outbox.sink = sock
    outbox.symbols.update(symbols)
    fanout.regroup(outbox)
    return outbox, sock


def notes(sock: Socket) -> list[dict[str, object]]:
    return [orjson.loads(untag(f)) for f in sock.frames]


def test_the_threshold_is_two_refresh_periods_plus_slack() -> None:
    assert stale_after_ms(2.0, None) == 6000
    assert stale_after_ms(2.0, 140.0) == 282_000  # quota pacing: a symbol every 140 s
    assert stale_after_ms(2.0, 0.5) == 6000  # never below the fetch interval's


def test_confirmations_and_publications_move_a_symbols_time_forward_only() -> None:
    fresh = Freshness(2.0)
    fresh.heard([make_quote(symbol="TCS", published_at=T0)], ["INFY"], T0 + 10)
    assert fresh.as_of == {"TCS": T0, "INFY": T0 + 10} and fresh.at == T0 + 10
    fresh.heard([], ["TCS"], T0 + 2000)
    fresh.heard([make_quote(symbol="INFY", published_at=T0 + 5)], [], 0)  # a resync's old quote
    assert fresh.as_of == {"TCS": T0 + 2000, "INFY": T0 + 10} and fresh.at == T0 + 2000
    # INFY is 1.99 s behind the newest confirmation: current. 6 s behind: stale.
    assert fresh.stale(["TCS", "INFY", "NEVER"], None) == {}
    fresh.heard([], ["TCS"], T0 + 6011)
    assert fresh.stale(["TCS", "INFY", "NEVER"], None) == {"INFY": T0 + 10}
    # Under quota pacing the same gap is normal.
    assert fresh.stale(["INFY"], 140.0) == {}


def test_one_note_per_half_threshold_shared_by_all_when_all_is_current() -> None:
    fanout, fresh = Fanout(), Freshness(2.0)
    _, a_sock = client(fanout, ["TCS"])
    _, b_sock = client(fanout, ["TCS", "INFY"])
    _, idle_sock = client(fanout, [])
    fresh.heard([], ["TCS", "INFY"], T0)
    # Owed at once; nothing takes it along, so it goes alone a quarter threshold (1.5 s) later.
    assert fresh.note(fanout, None, T0 + 50) == 0
    assert fresh.note(fanout, None, T0 + 1549) == 0 and a_sock.frames == []
    assert fresh.note(fanout, None, T0 + 1550) == 2
    assert (
        notes(a_sock)
        == notes(b_sock)
        == [{"type": "fresh", "at": T0, "now": T0 + 50, "stale_after": 6000, "stale": {}}]
    )
    assert a_sock.frames[0] is b_sock.frames[0]  # the same bytes, framed once
    assert idle_sock.frames == []  # watching nothing: nothing to confirm
    # Nothing newer heard: no note, however often the hub asks. Then one tick (2 s) newer: not
    # yet (the threshold is 6 s, a note every 3 s keeps every price current); two ticks: a note.
    assert fresh.note(fanout, None, T0 + 5000) == 0
    fresh.heard([], ["TCS", "INFY"], T0 + 2000)
    assert fresh.note(fanout, None, T0 + 9000) == 0
    fresh.heard([], ["TCS", "INFY"], T0 + 4000)
    fresh.note(fanout, None, T0 + 10_000)
    assert fresh.note(fanout, None, T0 + 11_500) == 2
    assert [n["at"] for n in notes(a_sock)] == [T0, T0 + 4000]


def test_a_note_owed_rides_along_with_the_next_batch_in_the_same_write() -> None:
    fanout, fresh = Fanout(), Freshness(2.0)
    _, sock = client(fanout, ["TCS", "INFY"])
    fresh.heard([], ["TCS", "INFY"], T0)
    fresh.note(fanout, None, T0)
    fanout.publish([make_quote(symbol="TCS", seq=9, published_at=T0 + 100)])
    [frame] = sock.frames  # one write: the batch, then the note
    assert frame.count(b"F:") == 2
    quote, note = frame[2:].split(b"F:")
    assert orjson.loads(quote)["quote"]["seq"] == 9 and orjson.loads(note)["type"] == "fresh"
    assert fanout.notes_along == 1
    assert fresh.note(fanout, None, T0 + 5000) == 0  # nothing left to send alone


def test_a_stale_symbol_is_named_to_its_watchers_only() -> None:
    fanout, fresh = Fanout(), Freshness(2.0)
    _, a_sock = client(fanout, ["TCS"])
    _, b_sock = client(fanout, ["TCS", "NSEI"])
    _, c_sock = client(fanout, ["TCS", "NSEI"])
    fresh.heard([], ["TCS", "NSEI"], T0)
    for step in range(1, 5):  # NSEI is not priced any more (its provider is down)
        fresh.heard([], ["TCS"], T0 + 2000 * step)
    fresh.note(fanout, None, T0 + 8000)
    fresh.note(fanout, None, T0 + 9500)
    assert notes(a_sock)[0]["stale"] == {}
    assert notes(b_sock)[0]["stale"] == notes(c_sock)[0]["stale"] == {"NSEI": T0}
    assert b_sock.frames[0] is c_sock.frames[0]  # one cohort, one note


def test_a_note_waits_behind_owed_messages_and_only_the_newest_is_kept() -> None:
    fanout, fresh = Fanout(), Freshness(2.0)
    box, sock = client(fanout, ["TCS"])
    sock.paused = True
    for step in range(3):
        fresh.heard([], ["TCS"], T0 + 4000 * step)
        fresh.note(fanout, None, T0 + 4000 * step)
        fresh.note(fanout, None, T0 + 4000 * step + 1500)
    box.offer("TCS", JSON_FORMAT.encode(make_quote(seq=7)), T0)
    drained = [orjson.loads(m) for m in box.drain()]
    # The quote first, then one note: the newest; the older two were superseded.
    assert [m["type"] for m in drained] == ["quote", "fresh"] and drained[1]["at"] == T0 + 8000
    assert not box.owes()


def test_a_closing_outbox_is_given_no_note() -> None:
    fanout, fresh = Fanout(), Freshness(2.0)
    box, sock = client(fanout, ["TCS"])
    box.close_after(1001, "bye")
    fresh.heard([], ["TCS"], T0)
    fresh.note(fanout, None, T0)
    fresh.note(fanout, None, T0 + 1500)
    assert sock.frames == [] and box.drain() == []


def test_a_cohort_whose_prices_all_just_moved_needs_no_note() -> None:
    fanout, fresh = Fanout(), Freshness(2.0)
    _, moved_sock = client(fanout, ["TCS", "INFY"])
    _, quiet_sock = client(fanout, ["TCS", "WIPRO"])
    published = {"TCS": T0 - 1000, "INFY": T0 - 10, "WIPRO": T0 - 2000}
    fresh.heard([], ["TCS", "INFY", "WIPRO"], T0)
    # Every price of the first was published within a quarter threshold (1.5 s) of the note:
    # its quotes alone keep it current (the tick workload: all move every tick).
    fresh.note(fanout, None, T0, lambda s: published.get(s, 0))
    assert fresh.note(fanout, None, T0 + 1500) == 1
    assert moved_sock.frames == [] and len(quiet_sock.frames) == 1
