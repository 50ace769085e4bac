from __future__ import annotations

import orjson
import pytest

from app.ws.protocol import (
    ProtocolError,
    parse_request,
    quotes_frame,
    review_subscribe,
    review_unsubscribe,
)


def known(symbol: str) -> str | None:
    return None if symbol in {"TCS", "INFY", "AAPL", "NIFTY 50"} else f"unknown {symbol}"


def test_subscribe_request() -> None:
    r = parse_request('{"action":"subscribe","symbols":["TCS"],"id":"c1"}')
    assert (r.action, r.symbols, r.request_id) == ("subscribe", ("TCS",), "c1")


def test_ping_echoes_t() -> None:
    r = parse_request(b'{"action":"ping","t":123.5}')
    assert r.action == "ping" and r.t == 123.5


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("not json", "bad_json"),
        ("[1,2]", "bad_request"),
        ('"subscribe"', "bad_request"),
        ("{}", "bad_request"),
        ('{"action": 5}', "bad_request"),
        ('{"action":"dance"}', "unknown_action"),
        ('{"action":"subscribe"}', "bad_request"),
        ('{"action":"subscribe","symbols":"TCS"}', "bad_request"),
        ('{"action":"subscribe","symbols":[1]}', "bad_request"),
        ('{"action":"subscribe","symbols":[]}', "bad_request"),
        ('{"action":"subscribe","symbols":["TCS"],"id":{"a":1}}', "bad_request"),
        ('{"action":"ping","t":{"a":1}}', "bad_request"),
    ],
)
def test_malformed_requests_get_a_code_and_a_reason(text: str, code: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_request(text)
    assert info.value.code == code
    assert info.value.message


def test_error_keeps_the_request_id() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_request('{"action":"dance","id":"x9"}')
    assert info.value.request_id == "x9"


def test_review_rejects_each_bad_symbol_with_its_reason() -> None:
    review = review_subscribe(
        ["tcs", "TCS", "<script>", "", "NOPE", "INFY", "AAPL"], {"AAPL"}, 50, known
    )
    assert review.accepted == ["TCS", "INFY"]
    codes = {(r["symbol"], r["code"]) for r in review.rejected}
    assert codes == {
        ("TCS", "duplicate"), ("<script>", "invalid_symbol"), ("", "invalid_symbol"),
        ("NOPE", "unknown_symbol"), ("AAPL", "already_subscribed"),
    }  # fmt: skip
    assert all(r["reason"] for r in review.rejected)


def test_limit_accepts_up_to_the_limit_and_rejects_the_rest() -> None:
    review = review_subscribe(["TCS", "INFY", "AAPL"], {"NIFTY 50"}, 3, known)
    assert review.accepted == ["TCS", "INFY"]
    assert review.rejected == [
        {"symbol": "AAPL", "code": "limit_exceeded", "reason": "at most 3 symbols per connection"}
    ]


def test_unsubscribe_review() -> None:
    review = review_unsubscribe(["TCS", "tcs", "INFY", "!!"], {"TCS"})
    assert review.accepted == ["TCS"]
    assert {r["code"] for r in review.rejected} == {"not_subscribed", "invalid_symbol"}


def test_quote_frames_wrap_preencoded_quotes() -> None:
    one = orjson.loads(quotes_frame("batch", ['{"symbol":"A"}']))
    assert one == {"type": "quote", "quote": {"symbol": "A"}}
    many = orjson.loads(quotes_frame("batch", ['{"symbol":"A"}', '{"symbol":"B"}']))
    assert many["type"] == "batch" and len(many["quotes"]) == 2
    snap = orjson.loads(quotes_frame("snapshot", ['{"symbol":"A"}']))
    assert snap["type"] == "snapshot"
