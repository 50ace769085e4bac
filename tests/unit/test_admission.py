from __future__ import annotations

from app.ws.admission import Admission, client_key


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def admitted(admission: Admission, symbols: list[str]) -> list[str]:
    return [s for s in symbols if admission.admitted(s)]


def test_client_key_groups_an_ipv6_client_by_its_64() -> None:
    assert client_key("203.0.113.9") == "203.0.113.9"
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::2")
    assert client_key("2001:db8:1:2::1") != client_key("2001:db8:1:3::1")
    assert client_key("::ffff:203.0.113.9") == "203.0.113.9"
    assert client_key(None) == "?"


def test_a_client_waits_in_its_order_within_its_cap() -> None:
    admission = Admission(6, 3, clock=Clock())
    junk = [f"{i:04d}" for i in range(200)]
    admission.want("10.0.0.1", junk)
    assert admitted(admission, junk) == junk[:3]  # in the order it asked, at most 3 waiting


def test_several_junk_clients_cannot_keep_a_newcomer_waiting() -> None:
    clock = Clock()
    admission = Admission(6, 3, clock=clock)
    for address in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        admission.want(address, [f"{address}-{i}" for i in range(200)])
    clock.now += 600  # the budget is full again; the junk clients take all but the last token
    for address in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        admission.settled([s for s in [f"{address}-{i}" for i in range(200)] if
                           admission.admitted(s)])  # fmt: skip
    admission.refill()
    admission.want("10.0.0.9", ["ORCL"])
    assert admission.admitted("ORCL")


def test_tokens_go_to_the_client_admitted_least_lately() -> None:
    clock = Clock()
    admission = Admission(2, 2, clock=clock)  # a burst of 2
    admission.want("a", ["A1", "A2", "A3"])
    assert admitted(admission, ["A1", "A2", "A3"]) == ["A1"]  # the last token is kept back
    admission.want("b", ["B1"])
    assert admission.admitted("B1")  # a newcomer gets the kept token
    clock.now += 30  # one token more
    admission.want("c", ["C1"])
    admission.settled(["A1", "B1"])
    admission.refill()
    assert admission.admitted("C1") and not admission.admitted("A2")


def test_the_fetchers_budget_is_shared_between_replicas() -> None:
    clock = Clock()
    admission = Admission(6, 6, clock=clock)
    admission.share(3)  # 2 a minute here
    admission.want("a", [f"S{i}" for i in range(10)])
    assert len(admitted(admission, [f"S{i}" for i in range(10)])) == 1  # burst 2, 1 kept back


def test_an_admission_lingers_for_a_watcher_coming_back() -> None:
    clock = Clock()
    admission = Admission(2, 2, linger=30, clock=clock)
    admission.want("a", ["X"])
    admission.unwant("a", ["X"])  # a long-poll returned
    assert admission.admitted("X")
    clock.now += 10
    admission.want("a", ["X"])  # and came back: no new token spent
    admission.unwant("a", ["X"])
    clock.now += 31
    admission.refill()
    assert not admission.admitted("X")


def test_watchers_are_counted_and_clients_forgotten_when_idle() -> None:
    clock = Clock()
    admission = Admission(6, 2, clock=clock)
    admission.want("a", ["X"])
    admission.want("a", ["X"])  # a second tab of the same client
    assert admission.demand("X") == 1
    admission.want("b", ["X"])
    assert admission.demand("X") == 2
    for client in ("a", "a", "b"):
        admission.unwant(client, ["X"])
    assert not admission.admitted("X")
    clock.now += 61
    admission.refill()
    assert admission.clients == 0


def test_the_board_and_disabled_admission_need_no_room() -> None:
    admission = Admission(1, 1, always=["NIFTY 50"])
    admission.want("a", ["NIFTY 50"])
    assert admission.admitted("NIFTY 50") and admission.clients == 1
    off = Admission(1, 1, enabled=False)
    off.want("a", ["X", "Y"])
    assert off.admitted("X") and off.admitted("Y") and off.clients == 0
