from __future__ import annotations

from app.ws.admission import Admission, client_key


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_client_key_groups_an_ipv6_client_by_its_64() -> None:
    assert client_key("203.0.113.9") == "203.0.113.9"
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::2")
    assert client_key("2001:db8:1:2::1") != client_key("2001:db8:1:3::1")
    assert client_key("::ffff:203.0.113.9") == "203.0.113.9"
    assert client_key(None) == "?"


def test_a_junk_client_gets_its_share_and_another_client_is_admitted_at_once() -> None:
    clock = Clock()
    admission = Admission(3, clock=clock)
    junk = [f"{i:04d}" for i in range(200)]
    admission.want("10.0.0.1", junk)
    assert [s for s in junk if admission.admitted(s)] == junk[:3]  # in the order it asked
    admission.want("10.0.0.2", ["ORCL"])
    assert admission.admitted("ORCL")


def test_waiting_symbols_are_admitted_as_earlier_ones_settle_and_the_budget_refills() -> None:
    clock = Clock()
    admission = Admission(3, clock=clock)
    junk = [f"{i:04d}" for i in range(10)]
    admission.want("10.0.0.1", junk)
    admission.settled(junk[:3])  # rejected by the provider
    admission.refill()
    assert not any(admission.admitted(s) for s in junk[3:])  # no budget left yet
    clock.now += 20  # 3 a minute: one more
    admission.refill()
    assert [s for s in junk if admission.admitted(s)] == junk[3:4]
    clock.now += 60
    admission.refill()
    assert [s for s in junk if admission.admitted(s)] == junk[3:6]  # at most 3 waiting at once


def test_a_symbol_many_clients_want_needs_room_from_one_of_them() -> None:
    admission = Admission(1, clock=Clock())
    admission.want("a", ["X"])
    admission.want("b", ["Y", "X"])  # X is admitted already: b's room goes to Y
    assert admission.admitted("X") and admission.admitted("Y")
    admission.unwant("a", ["X"])
    assert not admission.admitted("X")  # b wants it still, but was given room for Y
    admission.settled(["Y"])
    admission.refill()
    assert not admission.admitted("X")  # b's budget is spent for this minute


def test_watchers_are_counted_and_clients_forgotten_when_idle() -> None:
    clock = Clock()
    admission = Admission(2, clock=clock)
    admission.want("a", ["X"])
    admission.want("a", ["X"])  # a second tab of the same client
    admission.unwant("a", ["X"])
    assert admission.admitted("X")
    admission.unwant("a", ["X"])
    assert not admission.admitted("X")
    admission.refill()
    assert admission.clients == 1  # its budget is not full yet: remembered
    clock.now += 60
    admission.refill()
    assert admission.clients == 0


def test_disabled_admits_everything() -> None:
    admission = Admission(1, enabled=False)
    admission.want("a", ["X", "Y"])
    assert admission.admitted("X") and admission.admitted("Y") and admission.clients == 0
