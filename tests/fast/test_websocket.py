"""`/ws` in-process (docs/protocol.md): requests, replies, live quotes, and what bad input gets."""

from __future__ import annotations

import re
import time
from decimal import Decimal
from typing import Any

import orjson
import pytest
from starlette.testclient import WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from tests.fast.inprocess import close_code, message, receive, reply, wait_priced
from tests.unit.asgi import TestClient


def send(ws: WebSocketTestSession, obj: object) -> None:
    ws.send_text(orjson.dumps(obj).decode())


def welcomed(ws: WebSocketTestSession) -> dict[str, Any]:
    welcome = receive(ws)
    assert welcome["type"] == "welcome", welcome
    return welcome


def live_quotes(ws: WebSocketTestSession) -> list[dict[str, Any]]:
    """The quotes of the next live update (`quote` or `batch`), skipping anything else."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        got = receive(ws)
        if got["type"] == "quote":
            return [got["quote"]]
        if got["type"] == "batch":
            return list(got["quotes"])
    raise AssertionError("no live update within 5 s")


def live_quote(ws: WebSocketTestSession, symbol: str) -> dict[str, Any]:
    """The next live quote of `symbol`."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for quote in live_quotes(ws):
            if quote["symbol"] == symbol:
                return quote
    raise AssertionError(f"no live quote of {symbol} within 5 s")


def test_welcome_states_the_protocol_and_limits(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        welcome = welcomed(ws)
    assert welcome["protocol"] == 1 and welcome["status"] == "live"
    assert welcome["limits"] == {"max_symbols": 5, "max_message_bytes": 65536}
    assert welcome["replica"] and welcome["heartbeat"] > 0


def test_subscribe_acknowledges_then_snapshots_then_streams_newer_quotes(
    client: TestClient,
) -> None:
    wait_priced(client, "TCS", "INFY")
    with client.websocket_connect("/ws") as ws:
        welcomed(ws)
        send(ws, {"action": "subscribe", "symbols": [" tcs ", "INFY"], "id": "c1"})
        ack = reply(ws, "subscribed")
        assert ack == {
            "type": "subscribed", "id": "c1", "accepted": ["TCS", "INFY"], "rejected": [],
            "symbols": ["INFY", "TCS"],
        }  # fmt: skip
        snapshot = reply(ws, "snapshot")
        seen = {q["symbol"]: q for q in snapshot["quotes"]}
        assert set(seen) == {"TCS", "INFY"}
        for quote in seen.values():
            # Prices are exact decimal strings; change is price - previous close.
            assert Decimal(quote["change"]) == Decimal(quote["price"]) - Decimal(
                quote["prev_close"]
            )
        first = seen["TCS"]
        later = live_quote(ws, "TCS")
        assert (later["epoch"], later["seq"]) > (first["epoch"], first["seq"])


def test_symbols_in_the_url_subscribe_at_connect(client: TestClient) -> None:
    with client.websocket_connect("/ws?symbols=AAPL,nope") as ws:
        welcomed(ws)
        ack = reply(ws, "subscribed")
    assert ack["id"] is None and ack["accepted"] == ["AAPL"] and ack["symbols"] == ["AAPL"]
    [rejection] = ack["rejected"]
    assert (rejection["symbol"], rejection["code"]) == ("NOPE", "unknown_symbol")


def test_every_rejection_code_and_existing_subscriptions_are_kept(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        welcomed(ws)
        send(ws, {"action": "subscribe", "symbols": ["TCS", "INFY"], "id": 1})
        assert reply(ws, "subscribed")["accepted"] == ["TCS", "INFY"]
        send(ws, {
            "action": "subscribe", "id": 2,
            "symbols": ["TCS", "AAPL", "aapl", "NOTATICKER", "bad!sym", "", "A" * 25, "MSFT",
                        "RELIANCE", "HDFCBANK"],
        })  # fmt: skip
        ack = reply(ws, "subscribed")
        # In request order, each once; an invalid symbol is echoed as sent (it has no canonical
        # form). Five per connection: two held, three more fit, the next is over the limit.
        assert [(r["symbol"], r["code"]) for r in ack["rejected"]] == [
            ("TCS", "already_subscribed"),
            ("AAPL", "duplicate"),
            ("NOTATICKER", "unknown_symbol"),
            ("bad!sym", "invalid_symbol"),
            ("", "invalid_symbol"),
            ("A" * 25, "invalid_symbol"),
            ("HDFCBANK", "limit_exceeded"),
        ]
        assert all(r["reason"] for r in ack["rejected"])
        assert ack["accepted"] == ["AAPL", "MSFT", "RELIANCE"]
        assert ack["symbols"] == ["AAPL", "INFY", "MSFT", "RELIANCE", "TCS"]
        send(ws, {"action": "unsubscribe", "symbols": ["INFY", "NOTATICKER"], "id": 3})
        gone = reply(ws, "unsubscribed")
        assert gone["accepted"] == ["INFY"] and "INFY" not in gone["symbols"]
        assert [(r["symbol"], r["code"]) for r in gone["rejected"]] == [
            ("NOTATICKER", "not_subscribed")
        ]


def test_after_unsubscribe_no_quote_of_that_symbol_arrives(client: TestClient) -> None:
    with client.websocket_connect("/ws?symbols=TCS,INFY") as ws:
        welcomed(ws)
        reply(ws, "subscribed")
        send(ws, {"action": "unsubscribe", "symbols": ["TCS"], "id": "u"})
        reply(ws, "unsubscribed")
        # Three fresh INFY updates (several fetch intervals) and no TCS among what came with them.
        symbols: list[str] = []
        deadline = time.monotonic() + 5
        while symbols.count("INFY") < 3 and time.monotonic() < deadline:
            symbols += [q["symbol"] for q in live_quotes(ws)]
        assert symbols.count("INFY") >= 3, symbols
        assert "TCS" not in symbols


def test_ping_echoes_id_and_t_untouched(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        welcomed(ws)
        send(ws, {"action": "ping", "t": 1732790000123, "id": "p1"})
        pong = reply(ws, "pong")
        send(ws, {"action": "ping", "t": "any text", "id": 7})
        pong2 = reply(ws, "pong")
    assert (pong["id"], pong["t"]) == ("p1", 1732790000123) and pong["server_time"] > 0
    assert (pong2["id"], pong2["t"]) == (7, "any text")


@pytest.mark.parametrize(
    ("frame", "code", "request_id"),
    [
        ("{not json", "bad_json", None),
        ("[1, 2]", "bad_request", None),
        ('"subscribe"', "bad_request", None),
        ('{"symbols": ["TCS"], "id": "x"}', "bad_request", "x"),
        ('{"action": "subscribe", "symbols": "TCS", "id": 5}', "bad_request", 5),
        ('{"action": "subscribe", "symbols": [], "id": 5}', "bad_request", 5),
        ('{"action": "subscribe", "symbols": [1, 2]}', "bad_request", None),
        ('{"action": "ping", "id": true}', "bad_request", None),
        ('{"action": "ping", "id": "' + "i" * 65 + '"}', "bad_request", None),
        ('{"action": "ping", "t": "' + "t" * 65 + '", "id": "p"}', "bad_request", "p"),
        ('{"action": "dance", "id": "d"}', "unknown_action", "d"),
    ],
)
def test_a_malformed_frame_gets_an_error_and_the_connection_stays_usable(
    client: TestClient, frame: str, code: str, request_id: object
) -> None:
    with client.websocket_connect("/ws") as ws:
        welcomed(ws)
        ws.send_text(frame)
        error = reply(ws, "error")
        assert (error["code"], error["id"], error["retry"]) == (code, request_id, False)
        assert error["message"]
        send(ws, {"action": "ping", "id": "after"})
        assert reply(ws, "pong")["id"] == "after"


def test_a_binary_frame_is_read_like_text(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        welcomed(ws)
        ws.send_bytes(b'{"action": "ping", "id": "b"}')
        assert reply(ws, "pong")["id"] == "b"
        ws.send_bytes(b"\xff\xfe")
        assert reply(ws, "error")["code"] == "bad_json"


def test_an_oversized_message_closes_with_1009(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        welcomed(ws)
        ws.send_text('{"action": "ping", "t": "' + "x" * 70_000 + '"}')
        assert close_code(ws) == 1009


def test_a_foreign_origin_is_refused_before_accept(client: TestClient) -> None:
    with pytest.raises(WebSocketDisconnect) as refused:
        with client.websocket_connect("/ws", headers={"Origin": "https://evil.example"}):
            pass
    # Closed before accept: a server answers the upgrade with HTTP 403 (tests/e2e check that).
    assert refused.value.code == 1008
    with client.websocket_connect("/ws", headers={"Origin": "http://testserver"}) as ws:
        welcomed(ws)


ROW = re.compile(
    r'<tr id="q-([^"]+)" hx-swap-oob="true" class="quote ([a-z ]+)" data-symbol="([^"]+)"'
)


def test_format_html_sends_oob_rows_and_no_acknowledgements(client: TestClient) -> None:
    with client.websocket_connect("/ws?format=html&symbols=TCS,NOPE") as ws:
        frames = [str(message(ws)) for _ in range(3)]
        send(ws, {"action": "ping", "id": "quiet"})  # acted on, never answered in html
        frames += [str(message(ws)) for _ in range(2)]
    assert not any(f.lstrip().startswith("{") for f in frames), frames  # no JSON at all
    rows = [m.groups() for f in frames for m in ROW.finditer(f)]
    assert ("NOPE", "rejected", "NOPE") in rows  # the unknown symbol's rejected row, at once
    priced = [r for r in rows if r[2] == "TCS"]
    assert priced and all(r[1].split()[0] in ("up", "down", "flat") for r in priced)


def test_a_bad_format_is_refused_before_accept(client: TestClient) -> None:
    with pytest.raises(WebSocketDisconnect) as refused:
        with client.websocket_connect("/ws?format=xml"):
            pass
    assert refused.value.code == 1008
