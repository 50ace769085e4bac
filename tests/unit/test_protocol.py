from __future__ import annotations

import orjson
import pytest

from app.protocol import (
    REPLY_FLOOR_BYTES,
    ProtocolError,
    max_request_items,
    parse_request,
    quotes_frame,
    review_subscribe,
    review_unsubscribe,
    reviewed,
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
    review = review_unsubscribe(["TCS", "tcs", "INFY", "!!"], {"TCS"}, 50)
    assert review.accepted == ["TCS"]
    assert {r["code"] for r in review.rejected} == {"not_subscribed", "invalid_symbol"}


def test_quote_frames_wrap_preencoded_quotes() -> None:
    one = orjson.loads(quotes_frame("batch", [b'{"symbol":"A"}']))
    assert one == {"type": "quote", "quote": {"symbol": "A"}}
    many = orjson.loads(quotes_frame("batch", [b'{"symbol":"A"}', b'{"symbol":"B"}']))
    assert many["type"] == "batch" and len(many["quotes"]) == 2
    snap = orjson.loads(quotes_frame("snapshot", [b'{"symbol":"A"}']))
    assert snap["type"] == "snapshot"


def test_repeated_rejections_collapse_into_one_entry_with_a_count() -> None:
    review = review_subscribe(["TCS"] * 40 + ["!"] * 30, set(), 50, known)
    assert review.accepted == ["TCS"]
    reply = orjson.loads(reviewed("subscribed", review, ["TCS"], "c1"))
    assert reply["rejected"] == [
        {"symbol": "TCS", "code": "duplicate", "count": 39,
         "reason": "symbol appears more than once in this request"},
        {"symbol": "!", "code": "invalid_symbol", "count": 30,
         "reason": "symbol may hold only letters, digits, single spaces and . & : / _ -"},
    ]  # fmt: skip
    assert "omitted" not in reply


def test_items_past_the_cap_are_counted_not_read() -> None:
    seen: list[str] = []

    def check(symbol: str) -> str | None:
        seen.append(symbol)
        return None

    raw = [f"S{i:05d}" for i in range(16_000)]
    review = review_subscribe(raw, set(), 50, check)
    assert len(seen) == max_request_items(50) and review.accepted == raw[:50]
    assert review.unread == 16_000 - max_request_items(50)
    reply = orjson.loads(reviewed("subscribed", review, review.accepted, None))
    limited = [r for r in reply["rejected"] if r["code"] == "limit_exceeded"]
    assert sum(r.get("count", 1) for r in limited) + reply["omitted"] == 16_000 - 50


@pytest.mark.parametrize(
    "items",
    [
        ["TCS"] * 16_000,  # one symbol, over and over
        [f"!{i}" for i in range(16_000)],  # distinct invalid items
        [f"NOPE{i}" for i in range(16_000)],  # distinct unknown symbols
        [f"{'X' * 30}{i}" for i in range(16_000)],  # too long, each its own reason text
    ],
)
def test_a_reply_is_never_much_larger_than_its_request(items: list[str]) -> None:
    request = orjson.dumps({"action": "subscribe", "symbols": items})
    parsed = parse_request(request)
    review = review_subscribe(parsed.symbols, set(), 50, known)
    reply = reviewed("subscribed", review, review.accepted, None, len(request))
    assert len(reply) <= max(2 * REPLY_FLOOR_BYTES, 2 * len(request))
    small = orjson.dumps({"action": "subscribe", "symbols": items[:60]})
    review = review_subscribe(parse_request(small).symbols, set(), 50, known)
    reply = reviewed("subscribed", review, review.accepted, None, len(small))
    assert len(reply) <= 2 * REPLY_FLOOR_BYTES + len(small)
    body = orjson.loads(reply)
    listed = sum(r.get("count", 1) for r in body["rejected"])
    assert listed + body.get("omitted", 0) + len(body["accepted"]) == 60  # every item accounted
