from __future__ import annotations

from app.core.admission import Admission, client_key


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def full(per_minute: float, per_client: int, **kwargs: object) -> tuple[Admission, Clock]:
    """An admission whose budget has had time to fill (it starts with one token)."""
    clock = Clock()
    admission = Admission(per_minute, per_client, clock=clock, **kwargs)  # type: ignore[arg-type]
    clock.now += 600
    return admission, clock


def admitted(admission: Admission, symbols: list[str]) -> list[str]:
    return [s for s in symbols if admission.admitted(s)]


def test_client_key_groups_an_ipv6_client_by_its_64() -> None:
    assert client_key("203.0.113.9") == "203.0.113.9"
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::2")
    assert client_key("2001:db8:1:2::1") != client_key("2001:db8:1:3::1")
    assert client_key("::ffff:203.0.113.9") == "203.0.113.9"
    assert client_key(None) == "?"


def test_a_new_replica_starts_with_one_token() -> None:
    admission = Admission(6, 3, clock=Clock())
    admission.want("a", ["X", "Y"])
    assert admitted(admission, ["X", "Y"]) == ["X"]


def test_a_client_waits_in_its_order_within_its_room() -> None:
    admission, _ = full(6, 3)
    junk = [f"{i:04d}" for i in range(200)]
    admission.want("10.0.0.1", junk)
    assert admitted(admission, junk) == junk[:3]  # in the order it asked, at most 3 waiting


def test_many_junk_clients_cannot_keep_a_newcomer_waiting_past_the_next_token() -> None:
    admission, clock = full(6, 3)
    junk = {f"10.0.0.{n}": [f"J{n}-{i}" for i in range(200)] for n in range(20)}
    for _ in range(30):  # ten minutes of junk: whatever they are admitted is refused at once
        for address, symbols in junk.items():
            admission.want(address, symbols)
            admission.settled(admitted(admission, symbols))
            admission.unwant(address, symbols)
        clock.now += 20
    for address, symbols in junk.items():
        admission.want(address, symbols)  # 20 clients waiting, and every token spent
    for newcomer, symbol in (("10.9.9.9", "ORCL"), ("10.9.9.8", "IBM")):
        admission.want(newcomer, [symbol])
        if not admission.admitted(symbol):
            clock.now += 10  # the next token, at 6 a minute: it is the newcomer's
            admission.refill()
        assert admission.admitted(symbol)
        admission.settled([symbol])


def test_one_junk_client_leaves_the_last_token_to_a_newcomer() -> None:
    admission, _ = full(6, 10)
    admission.want("10.0.0.1", [f"J{i}" for i in range(200)])
    admission.want("10.9.9.9", ["ORCL"])
    assert admission.admitted("ORCL")


def test_tokens_go_to_the_client_admitted_least_lately() -> None:
    admission, clock = full(2, 2)  # a bucket of 2
    admission.want("a", ["A1", "A2", "A3"])
    assert admitted(admission, ["A1", "A2", "A3"]) == ["A1"]  # the last token is kept back
    admission.want("b", ["B1"])
    assert admission.admitted("B1")  # a newcomer gets the kept token
    clock.now += 30  # one token more
    admission.want("c", ["C1"])
    admission.settled(["A1", "B1"])
    assert admission.admitted("C1") and not admission.admitted("A2")


def test_the_fetchers_budget_is_shared_between_replicas() -> None:
    admission, clock = full(6, 6)
    admission.share(3)  # 2 a minute here
    admission.want("a", [f"S{i}" for i in range(10)])
    assert len(admitted(admission, [f"S{i}" for i in range(10)])) == 1  # bucket 2, 1 kept back
    small, clock = full(6, 6)
    small.share(4)  # 1.5 a minute: too small to keep a token back
    small.want("a", [f"S{i}" for i in range(10)])
    clock.now += 60
    small.refill()
    assert len(admitted(small, [f"S{i}" for i in range(10)])) == 2


def test_an_admission_lingers_for_a_watcher_coming_back_and_counts_meanwhile() -> None:
    admission, clock = full(6, 2, linger=30)
    admission.want("a", ["X", "Y"])
    admission.unwant("a", ["X", "Y"])  # a long-poll returned
    assert admission.admitted("X") and admission.admitted("Y")
    admission.want("a", ["Z"])  # no room: X and Y still count
    assert not admission.admitted("Z")
    clock.now += 10
    admission.want("a", ["X"])  # came back for X: no new token spent
    admission.unwant("a", ["X", "Z"])
    clock.now += 31
    admission.refill()
    assert not admission.admitted("X") and not admission.admitted("Y")


def test_another_client_inherits_an_admission_when_its_client_leaves() -> None:
    admission, clock = full(6, 1, linger=5)
    admission.want("a", ["X"])
    admission.want("b", ["X"])
    admission.unwant("a", ["X"])
    clock.now += 6
    admission.refill()
    assert admission.admitted("X")  # b's now, without a token


def test_watchers_are_counted_and_clients_forgotten_when_idle() -> None:
    admission, clock = full(6, 2)
    admission.want("a", ["X"])
    admission.want("a", ["X"])  # a second tab of the same client
    assert admission.demand("X") == 1
    admission.want("b", ["X"])
    assert admission.demand("X") == 2
    for client in ("a", "a", "b"):
        admission.unwant(client, ["X"])
    assert not admission.admitted("X")
    admission.refill()
    assert admission.clients == 1  # a (admitted X) is remembered for an hour; b is forgotten
    clock.now += 3601
    admission.refill()
    assert admission.clients == 0


def test_the_board_and_disabled_admission_need_no_room() -> None:
    admission = Admission(1, 1, always=["NIFTY 50"])
    admission.want("a", ["NIFTY 50"])
    assert admission.admitted("NIFTY 50")
    off = Admission(1, 1, enabled=False)
    off.want("a", ["X", "Y"])
    assert off.admitted("X") and off.admitted("Y") and off.clients == 0
