from __future__ import annotations

from app.cooldown import Cooldowns


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_symbol_cools_down_then_may_be_tried_again() -> None:
    clock = Clock()
    cool = Cooldowns(clock)
    cool.add("NOPE", "unknown symbol", 10)
    assert cool.reason("NOPE") == "unknown symbol"
    assert cool.remaining("NOPE") == 10
    clock.now += 10
    assert cool.reason("NOPE") is None and cool.remaining("NOPE") == 0
    assert cool.reason("OTHER") is None


def test_expired_junk_does_not_pile_up() -> None:
    clock = Clock()
    cool = Cooldowns(clock)
    for i in range(10_000):  # a client inventing symbols for a long time
        cool.add(f"JUNK{i}", "unknown", 1)
        clock.now += 0.01
    assert len(cool) < 2048
