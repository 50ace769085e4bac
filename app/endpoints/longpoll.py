"""Stateless long-poll: `GET /api/poll?symbols=A,B&cursor=...`, answerable by any replica.

The cursor is opaque to clients: base64url JSON of `[[symbol, epoch, seq], ...]`, the newest version
the client has per symbol. A request returns at once with every quote newer than the cursor, else
waits until one arrives or `POLL_TIMEOUT` passes, then returns what it has (maybe nothing) and a
cursor to send next time. Same ordering rule as the WebSocket: newer is (epoch, seq) greater.
A rejection is news (an answer at once) only the first time: the cursor then records it as
`-1, -1`, and later polls list it in `rejected` but wait for news like any other.
Each answer carries the freshness note of its symbols (`fresh`, as on the WebSocket, see
app.core.freshness); a client that sends the last note's time as `as_of` is answered again when
a newer one is due, even if no price changed.
`format=html` answers the same envelope with the quotes as one `html` string of `_quote_row.html`
rows (what `/ws?format=html` sends, rejected symbols' rows included), so pages use one partial on
either transport.

Price alerts (app.alerts) ride along for a caller that has them: `alerts=<cursor>` (the
`alerts_cursor` of the previous answer; none on a page's first poll) asks for the caller's fired
alerts numbered above it (the first poll: those no tab has shown yet); a fired alert answers at
once; the answer carries them (`alerts`, wire protocol `alert` messages; in `html`, appended as
`alert-fired` elements) and the next `alerts_cursor`.
"""

from __future__ import annotations

import time

import orjson
from starlette.requests import Request
from starlette.responses import Response

from app.alerts.delivery import Fired
from app.clients import client_of
from app.core.freshness import stale_after_ms
from app.endpoints import alerts as alert_pages
from app.endpoints.query import (
    TOLD_REJECTED,
    ApiError,
    Cursor,
    decode_cursor,
    encode_cursor,
    parse_symbols,
    wire_format_name,
)
from app.formats import JSON_FORMAT, HtmlFormat
from app.models import Quote, encode_quote
from app.pubsub.base import BusUnavailable
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
    as_of = _as_of(request.query_params.get("as_of", ""))
    hub = svc.hub
    freshness = hub.freshness
    delivery = svc.alerts.delivery
    try:
        owner = await alert_pages.owner_of(request, svc.alerts)
    except BusUnavailable:
        owner = None
    fired: list[Fired] = []
    alerts_cursor = _alerts_cursor(request.query_params.get("alerts", ""))
    # Registered before the first look: an alert firing in between wakes this poll.
    alerted = delivery.watch(owner) if owner is not None else None
    hub.subscriptions.note_poll(symbols)
    hub.polls_in_flight += 1
    try:
        if owner is not None:
            fired = await delivery.for_poll(owner, alerts_cursor)
            if alerts_cursor is None:  # a new page: only what no tab showed yet, then what comes
                alerts_cursor = max([delivery.latest_seq(owner), *(f.seq for f in fired)])
        # A draining server answers at once; the client's next poll goes elsewhere.
        # Rejections are news once: the cursor remembers them, so a page whose symbols are all
        # rejected waits like any other instead of polling in a tight loop.
        news = [r for r in rejected if cursor.get(r["symbol"]) != TOLD_REJECTED]
        client = client_of(request.scope)
        await hub.snapshot(symbols)  # what the store has needs no admission (Hub.await_quotes)
        # A client that says how fresh its prices are (`as_of`, the last answer's `fresh.at`) is
        # also answered when that moves on by half the time a price stays current, so its
        # prices never look delayed while nothing changes (app.core.freshness).
        half = stale_after_ms(freshness.interval, hub.refresh) // 2

        def ready(qs: list[Quote]) -> bool:
            due = as_of is not None and freshness.at - as_of >= half
            return bool(fired) or bool(news) or bool(_newer(qs, cursor)) or due

        waited = await delivery.race(
            owner, hub.await_quotes(symbols, ready, svc.settings.poll_timeout, client), alerted
        )
        if waited is None:  # an alert for this caller came first
            assert owner is not None
            fired = await delivery.for_poll(owner, alerts_cursor)
            quotes, timed_out = await hub.snapshot(symbols), False
        else:
            quotes, timed_out = waited
    finally:
        if alerted is not None and owner is not None:
            delivery.unwatch(owner, alerted)
        hub.polls_in_flight -= 1
        hub.subscriptions.note_poll(symbols)
    fresh = _newer(quotes, cursor)
    for quote in fresh:
        cursor[quote.symbol] = (quote.epoch, quote.seq)
    cursor = {s: v for s, v in cursor.items() if s in symbols}
    cursor.update((r["symbol"], TOLD_REJECTED) for r in rejected)
    now = int(time.time() * 1000)
    fmt = JSON_FORMAT if fmt_name == "json" else HtmlFormat(svc.renderer)
    note = freshness.told(fmt, symbols, hub.refresh, now)
    body = (
        b'{"type":"poll","cursor":'
        + orjson.dumps(encode_cursor(cursor))
        + b',"timeout":'
        + (b"true" if timed_out else b"false")
        + b',"status":'
        + orjson.dumps(hub.current_status().state)
        + b',"rejected":'
        + orjson.dumps(rejected)
        + _alerts_part(fired, alerts_cursor, fmt_name)
        + (
            b',"html":'
            + orjson.dumps(_html_rows(svc, fresh, rejected, fired) + note.decode())
            + b"}"
            if fmt_name == "html"
            else b',"fresh":' + note + b',"quotes":[' + b",".join(map(encode_quote, fresh)) + b"]}"
        )
    )
    return Response(body, media_type="application/json", headers={"Cache-Control": "no-store"})


def _as_of(raw: str) -> int | None:
    """The client's `as_of` (ms); None when absent or junk (then only news answers a poll)."""
    return int(raw) if raw.isdigit() and len(raw) <= 16 else None


def _html_rows(
    svc: Services, fresh: list[Quote], rejected: list[dict[str, str]], fired: list[Fired]
) -> str:
    """What `/ws?format=html` would send: rejected symbols' rows, the fresh quotes', alerts."""
    renderer = svc.renderer
    rows = [renderer.rejected_row(r["symbol"], r["reason"], svc.feed.name) for r in rejected]
    rows += [renderer.quote_row(q) for q in fresh]
    rows += [f.html.decode() for f in fired]
    return "".join(rows)


def _alerts_cursor(raw: str) -> int | None:
    return int(raw) if raw.isdigit() and len(raw) <= 18 else None


def _alerts_part(fired: list[Fired], cursor: int | None, fmt_name: str) -> bytes:
    """`,"alerts":[...]` (json) and `,"alerts_cursor":n`; nothing for a caller without alerts."""
    if cursor is None:
        return b""
    cursor = max([cursor, *(f.seq for f in fired)])
    listed = b"" if fmt_name == "html" else b',"alerts":[' + b",".join(f.json for f in fired) + b"]"
    return listed + b',"alerts_cursor":' + str(cursor).encode()
