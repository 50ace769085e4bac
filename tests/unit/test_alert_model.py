"""Price alerts' input validation and hysteresis (app.alerts.model)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from app.alerts.model import Alert, InvalidAlert, State, build, decode_alert

BAND = Decimal("0.5")


def make(
    kind: str = "above", value: str = "110", last: str | None = "100", note: str = ""
) -> Alert:
    return build(
        owner="anon:x", symbol="AAPL", kind=kind, value=value, note=note,
        last=None if last is None else Decimal(last), now_ms=1,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "value", "last", "message"),
    [
        ("above", "-5", "100", "more than 0"),
        ("above", "0", "100", "more than 0"),
        ("above", "abc", "100", "is not a number"),
        ("above", "", "100", "Enter a price"),
        ("above", "nan", "100", "is not a number"),
        ("above", "1e12", None, "not a plausible price"),
        ("above", "100.0000001", None, "not a plausible price"),
        ("above", "5000", "100", "more than 10× away"),
        ("below", "5", "100", "more than 10× away"),
        ("above", "99", "100", "already at or above"),
        ("below", "101", "100", "already at or below"),
        ("move", "0", "100", "not 0"),
        ("move", "75", "100", "between"),
        ("move", "5", None, "no price yet"),
        ("sideways", "5", "100", "Choose when"),
    ],
)
def test_bad_input_gets_a_clear_message(
    kind: str, value: str, last: str | None, message: str
) -> None:
    with pytest.raises(InvalidAlert, match=message):
        make(kind, value, last)


def test_a_long_note_is_refused_and_control_characters_dropped() -> None:
    with pytest.raises(InvalidAlert, match="at most 140"):
        make(note="x" * 141)
    assert make(note="buy\x00 more\n").note == "buy more"


def test_a_move_becomes_a_level_from_the_price_when_set() -> None:
    up = make("move", "5", "100.10")
    assert (up.level, up.up, up.base) == (Decimal("105.11"), True, Decimal("100.10"))
    assert up.pct == 5
    down = make("move", "-3", "200")
    assert (down.level, down.up) == (Decimal("194.00"), False)
    assert down.condition() == "moves −3 % from 200 (at 194.00)"


def test_encoding_round_trips_exact_decimals() -> None:
    alert = make("move", "-2.5", "1234.5678")
    assert decode_alert(alert.encode()) == alert


def run(alert: Alert, prices: list[str]) -> tuple[Alert, int]:
    """Step through `prices`; the alert after them and how many times it fired."""
    fired = 0
    for i, p in enumerate(prices):
        new = alert.step(Decimal(p), BAND, i)
        if new is not None:
            fired += new.state is State.FIRED and alert.state is State.ARMED
            alert = new
    return alert, fired


def test_a_price_hovering_at_the_level_fires_once() -> None:
    alert, fired = run(
        make("above", "110"), ["109", "110", "109.9", "110.01", "109.6", "111", "110"]
    )
    assert fired == 1 and alert.state is State.FIRED and alert.fired == 1


def test_it_fires_again_after_coming_back_by_the_band() -> None:
    # Re-arms at 110 × (1 − 0.5 %) = 109.45 or lower.
    alert, fired = run(make("above", "110"), ["110", "109.46", "110", "109.45", "110.5"])
    assert fired == 2 and alert.fired == 2 and alert.fired_price == Decimal("110.5")
    below, fired = run(make("below", "90"), ["90", "90.44", "89", "90.45", "89.99"])
    assert fired == 2


@pytest.mark.parametrize("value", ["0.001", "-0.004", "+0.0049"])
def test_a_move_that_rounds_to_zero_is_refused(value: str) -> None:
    with pytest.raises(InvalidAlert, match="not 0"):
        make("move", value, "100.00")


@pytest.mark.parametrize("value", ["0.01", "-0.01"])
def test_a_move_whose_level_rounds_back_to_the_last_price_is_refused(value: str) -> None:
    # 5.00 × 1.0001 = 5.0005 and 5.00 × 0.9999 = 4.9995 both round to 5.00: it would fire at once.
    with pytest.raises(InvalidAlert, match="larger move"):
        make("move", value, "5.00")


def test_a_move_takes_its_direction_from_the_sign_typed() -> None:
    assert make("move", "-0.5", "5.00").up is False
    assert make("move", "0.5", "5.00").up is True
