from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import orjson
import pytest

from app.models import Quote, QuoteDecodeError, decode_quote, encode_quote, is_newer
from app.symbols import InvalidSymbol, dom_id, normalize_symbol


def make_quote(**overrides: object) -> Quote:
    base = Quote(
        symbol="TCS", price=Decimal("3150.05"), change=Decimal("12.30"),
        change_pct=Decimal("0.39"), open=Decimal("3140.00"), high=Decimal("3155.10"),
        low=Decimal("3138.00"), prev_close=Decimal("3137.75"), volume=1200,
        currency="INR", exchange="NSE", name="Tata Consultancy Services Ltd",
        source="simulated", source_time=1_700_000_000_000, market_open=True,
        seq=3, epoch=10, published_at=1_700_000_000_100,
    )  # fmt: skip
    return replace(base, **overrides)  # type: ignore[arg-type]


def test_round_trip_keeps_decimals_exact() -> None:
    quote = make_quote(price=Decimal("0.10000000000000000555"))
    assert decode_quote(encode_quote(quote)) == quote


def test_prices_travel_as_strings() -> None:
    obj = orjson.loads(encode_quote(make_quote()))
    assert obj["price"] == "3150.05"
    assert obj["volume"] == 1200
    assert obj["seq"] == 3 and obj["epoch"] == 10


@pytest.mark.parametrize(
    ("field", "value"),
    [("price", 3150.05), ("price", "abc"), ("price", "NaN"), ("seq", "3"), ("seq", True),
     ("volume", 1.5), ("market_open", "yes"), ("symbol", None)],
)  # fmt: skip
def test_wrong_field_types_are_rejected(field: str, value: object) -> None:
    obj = orjson.loads(encode_quote(make_quote()))
    obj[field] = value
    with pytest.raises(QuoteDecodeError):
        decode_quote(orjson.dumps(obj))


def test_missing_fields_and_garbage_are_rejected() -> None:
    with pytest.raises(QuoteDecodeError, match="lacks"):
        decode_quote(b'{"symbol": "TCS"}')
    with pytest.raises(QuoteDecodeError):
        decode_quote(b"\xff not json")
    with pytest.raises(QuoteDecodeError):
        decode_quote(b"[1, 2]")


def test_ordering_is_epoch_then_seq() -> None:
    q = make_quote(epoch=10, seq=5)
    assert is_newer(q, None)
    assert is_newer(make_quote(epoch=10, seq=6), q)
    assert not is_newer(make_quote(epoch=10, seq=5), q)
    assert not is_newer(make_quote(epoch=9, seq=99), q)
    assert is_newer(make_quote(epoch=11, seq=1), q)


def test_same_market_data_ignores_stamps() -> None:
    q = make_quote()
    assert q.same_market_data(replace(q, seq=9, epoch=99, published_at=1))
    assert not q.same_market_data(replace(q, price=Decimal("1")))
    assert not q.same_market_data(replace(q, volume=1201))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(" tcs ", "TCS"), ("nifty 50", "NIFTY 50"), ("M&M", "M&M"), ("brk.b", "BRK.B"),
     ("RELIANCE:NSE", "RELIANCE:NSE"), ("EUR/USD", "EUR/USD")],
)  # fmt: skip
def test_valid_symbols_normalise(raw: str, expected: str) -> None:
    assert normalize_symbol(raw) == expected


@pytest.mark.parametrize(
    "raw", ["", "   ", "<script>", "A" * 25, "TCS;DROP", "NIFTY  50", "-TCS", "TC\u00c9", "a\nb"]
)
def test_invalid_symbols_are_refused_with_a_reason(raw: str) -> None:
    with pytest.raises(InvalidSymbol) as info:
        normalize_symbol(raw)
    assert str(info.value)


def test_dom_ids_are_safe_and_never_collide() -> None:
    assert dom_id("TCS") == "TCS"
    assert dom_id("NIFTY 50") != dom_id("NIFTY_50")
    assert all(c.isalnum() or c in "-_" for c in dom_id("M&M:NSE/X.Y"))
