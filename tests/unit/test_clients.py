from __future__ import annotations

from app.clients import ClientBudget


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_requests_past_the_burst_wait_for_the_rate() -> None:
    clock = Clock()
    budget = ClientBudget(0, 10, clock=clock)
    assert all(budget.request("a") == 0.0 for _ in range(20))  # the burst: twice the rate
    assert budget.request("a") > 0
    assert budget.request("b") == 0.0  # another client is not affected
    clock.now += 0.1
    assert budget.request("a") == 0.0


def test_connections_are_capped_per_client() -> None:
    budget = ClientBudget(2, 0)
    assert budget.open("a") and budget.open("a") and not budget.open("a")
    assert budget.open("b")
    budget.close("a")
    assert budget.open("a")


def test_finished_clients_are_forgotten() -> None:
    clock = Clock()
    budget = ClientBudget(2, 10, clock=clock)
    budget.request("a")
    budget.open("b")
    budget.sweep()
    assert budget.clients == 2  # a is refilling, b has a connection open
    clock.now += 1
    budget.close("b")
    budget.sweep()
    assert budget.clients == 0


def test_the_client_behind_a_trusted_proxy_is_the_forwarded_one() -> None:
    budget = ClientBudget(0, 0, trusted_proxies="10.0.0.1")
    headers = [(b"x-forwarded-for", b"203.0.113.9")]
    assert budget.key_for(("10.0.0.1", 5000), headers) == "203.0.113.9"
    assert budget.key_for(("198.51.100.7", 5000), headers) == "198.51.100.7"  # not trusted
    assert budget.key_for(("10.0.0.1", 5000), []) == "10.0.0.1"
