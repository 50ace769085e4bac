from __future__ import annotations

import pytest

from app.symbols import InvalidSymbol, dom_id, normalize_symbol, parse_symbol_list


def test_normalize() -> None:
    assert normalize_symbol("  nifty 50 ") == "NIFTY 50"
    for bad in ("", "<script>", "A  B", "X" * 25):
        with pytest.raises(InvalidSymbol):
            normalize_symbol(bad)


def test_dom_id_is_injective_for_lookalikes() -> None:
    assert dom_id("NIFTY 50") != dom_id("NIFTY_50")


def test_list_is_normalised_deduplicated_and_problems_named() -> None:
    parsed = parse_symbol_list("tcs, INFY,TCS,<b>,,aapl", max_parts=50)
    assert parsed.symbols == ["TCS", "INFY", "AAPL"]
    assert parsed.problems == ["'<b>': symbol may hold only letters, digits, single spaces and "
                               ". & : / _ -", "'': symbol is empty"]  # fmt: skip
    assert parsed.unread == 0
    assert parse_symbol_list("TCS,,INFY,", max_parts=50, skip_empty=True).problems == []


def test_parts_past_the_cap_are_counted_never_read() -> None:
    raw = ",".join(f"S{i:05d}" for i in range(80_000))
    parsed = parse_symbol_list(raw, max_parts=50)
    assert parsed.symbols == [f"S{i:05d}" for i in range(50)]
    assert parsed.unread == 80_000 - 50
    # Exactly at the cap nothing is left over; junk past the cap is never looked at.
    assert parse_symbol_list("A,B,C", max_parts=3).unread == 0
    assert parse_symbol_list("A,B,C,<<<,>>>", max_parts=3) == parse_symbol_list(
        "A,B,C,X,Y", max_parts=3
    )
