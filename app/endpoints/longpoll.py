"""Stateless long-poll: `GET /api/poll?symbols=A,B&cursor=...`, answerable by any replica.

The cursor is opaque to clients: base64url JSON of `[[symbol, epoch, seq], ...]`, the newest version
the client has per symbol. A request returns at once with every quote newer than the cursor, else
waits until one arrives or `POLL_TIMEOUT` passes, then returns what it has (maybe nothing) and a
cursor to send next time. Same ordering rule as the WebSocket: newer is (epoch, seq) greater.
A rejection is news (an answer at once) only the first time: the cursor then records it as
`-1, -1`, and later polls list it in `rejected` but wait for news like any other.
`format=html` answers the same envelope with the quotes as one `html` string of `_quote_row.html`
rows (what `/ws?format=html` sends, rejected symbols' rows included), so pages use one partial on
either transport.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from app.clients import client_of
from app.endpoints.query import (
    TOLD_REJECTED,
    ApiError,
    Cursor,
    decode_cursor,
    encode_cursor,
    parse_symbols,
    wire_format_name,
)
from app.models import Quote, encode_quote
from app.services import Services, services


def _newer(quotes: list[Quote], cursor: Cursor) -> list[Quote]:
    return [q for q in quotes if (q.epoch, q.seq) > cursor.get(q.symbol, (-1, -1))]


async def poll(request: Request) -> Response:
    svc = services(request)
    symbols, rejected = parse_symbols(request, svc)
    fmt_name = wire_format_name(request)
    if fmt_name is None:
        raise ApiError("bad_format", "format must be json or html")
    cursor = decode_cursor(request.query_params.get("cursor", ""))
    hub = svc.hub
    hub.subscriptions.note_poll(symbols)
    hub.polls_in_flight += 1
    try:
        # A draining server answers at once; the client's next poll goes elsewhere.
        # Rejections are news once: the cursor remembers them, so a page whose symbols are all
        # rejected waits like any other instead of polling in a tight loop.
        news = [r for r in rejected if cursor.get(r["symbol"]) != TOLD_REJECTED]
        client = client_of(request.scope)
        await hub.snapshot(symbols)  # what the store has needs no admission (Hub.await_quotes)
        quotes, timed_out = await hub.await_quotes(
            symbols,
            lambda qs: bool(news) or bool(_newer(qs, cursor)),
            svc.settings.poll_timeout,
            client,
        )
    finally:
        hub.polls_in_flight -= 1
        hub.subscriptions.note_poll(symbols)
    fresh = _newer(quotes, cursor)
    for quote in fresh:
        cursor[quote.symbol] = (quote.epoch, quote.seq)
    cursor = {s: v for s, v in cursor.items() if s in symbols}
    cursor.update((r["symbol"], TOLD_REJECTED) for r in rejected)
    body = (
        b'{"type":"poll","cursor":'
        + orjson.dumps(encode_cursor(cursor))
        + b',"timeout":'
        + (b"true" if timed_out else b"false")
        + b',"status":'
        + orjson.dumps(hub.state)
        + b',"rejected":'
        + orjson.dumps(rejected)
        + (
            b',"html":' + orjson.dumps(_html_rows(svc, fresh, rejected)) + b"}"
            if fmt_name == "html"
            else b',"quotes":[' + b",".join(encode_quote(q) for q in fresh) + b"]}"
        )
    )
    return Response(body, media_type="application/json", headers={"Cache-Control": "no-store"})


def _html_rows(svc: Services, fresh: list[Quote], rejected: list[dict[str, str]]) -> str:
    """The rows `/ws?format=html` would send: rejected symbols' rows, then the fresh quotes'."""
    renderer = svc.renderer
    rows = [renderer.rejected_row(r["symbol"], r["reason"], svc.feed.name) for r in rejected]
    rows += [renderer.quote_row(q) for q in fresh]
    return "".join(rows)
