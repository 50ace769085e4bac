"""`/alerts`: set, list and remove price alerts, with plain forms (no JavaScript needed).

`GET /alerts` lists the caller's alerts (`?symbol=TCS` pre-fills the form: the watchlist rows and
the stock page link here or post to it). `POST /alerts` (form fields `symbol`, `kind` = above |
below | move, `value`, `note`) stores an alert and redirects (303) to `/alerts?set=<id>`; bad
input renders the page again with the message (422) and stores nothing; past the per-owner bound
(`ALERTS_PER_OWNER`) it says so (422), and past the per-address rate (alerts stored, not
attempts: app.main's ALERTS_PER_MINUTE) it answers 429. `POST /alerts/{id}/remove` removes one
and redirects.
Posts are subject to the cross-site guard (app.csrf) like every other form.

Whose alerts: the signed-in user's when access control is on, else this browser's, named by the
signed `stocktracker_alerts` cookie that the first alert sets (app.alerts.identity).
"""

from __future__ import annotations

import logging
import time
from decimal import Decimal
from typing import Any

from starlette.requests import HTTPConnection, Request
from starlette.responses import RedirectResponse, Response

from app.alerts import Alerts
from app.alerts.identity import COOKIE, COOKIE_MAX_AGE
from app.alerts.model import KINDS, NOTE_MAX, InvalidAlert, build
from app.alerts.store import MAX_ALERTS, Added
from app.clients import client_of
from app.core.outbox import Outbox
from app.endpoints.pages import priced, render
from app.logbudget import client_noise
from app.login import read_form
from app.pubsub.base import BusUnavailable
from app.services import services
from app.symbols import InvalidSymbol, normalize_symbol

log = logging.getLogger(__name__)

MAX_FORM_BYTES = 4096
UNAVAILABLE = "Alerts are unavailable right now (the shared store does not answer): try again soon."


async def owner_of(conn: HTTPConnection, alerts: Alerts) -> str | None:
    """Whose alerts this request or connection sees: None when it has none (and no cookie).
    Raises BusUnavailable while the identity key cannot be read."""
    svc = services(conn)
    caller = svc.access.identify(conn.headers, conn.cookies)
    if caller.user is not None:
        return f"user:{caller.user}"  # signed in: the user's alerts, in every browser
    if COOKIE not in conn.cookies:
        return None
    owner = (await alerts.identities()).browser(conn.cookies[COOKIE])
    if owner is not None:
        await alerts.visited(owner)  # its alerts do not expire while it comes back
    return owner


async def page(request: Request) -> Response:
    """GET /alerts"""
    form = {"symbol": request.query_params.get("symbol", "")[:24], "kind": "above"}
    return await _page(request, form=form)


async def _page(
    request: Request,
    *,
    form: dict[str, str],
    error: str = "",
    status: int = 200,
) -> Response:
    alerts = services(request).alerts
    listed: list[Any] = []
    notice = ""
    try:
        owner = await owner_of(request, alerts)
        if owner is not None:
            listed = await alerts.store.owned(owner)
    except BusUnavailable as exc:
        log.warning("alerts page: %s", exc)
        error, status = error or UNAVAILABLE, 503 if status == 200 else status
    added = request.query_params.get("set")
    for alert in listed:
        if alert.id == added:
            notice = f"Alert set: {alert.symbol} {alert.condition()}."
    if request.query_params.get("removed"):
        notice = "Alert removed."
    return render(
        request, "alerts.html", "alerts", status=status, alerts=listed, limit=alerts.limit,
        form=form, kinds=KINDS, note_max=NOTE_MAX, error=error, notice=notice,
    )  # fmt: skip


async def create(request: Request) -> Response:
    """POST /alerts"""
    svc = services(request)
    alerts = svc.alerts
    fields = await read_form(request, MAX_FORM_BYTES)
    form = {k: fields.get(k, "")[:200] for k in ("symbol", "kind", "value", "note")}
    form["kind"] = form["kind"] or "above"
    try:
        symbol = normalize_symbol(form["symbol"])
    except InvalidSymbol as exc:
        shown = form["symbol"][:32]
        error = f"“{shown}” is not a valid symbol: {exc}." if shown else "Enter a symbol."
        return await _page(request, form=form, error=error, status=422)
    form["symbol"] = symbol
    if svc.hub.acceptance.reason(symbol) is not None:
        error = f"Unknown symbol “{symbol}”: the {svc.feed.name} feed does not list it."
        return await _page(request, form=form, error=error, status=422)
    # Throttled before pricing: a refused attempt must not make the feed price a symbol.
    address = client_of(request.scope)
    try:
        wait = await alerts.store.take(address)
    except BusUnavailable as exc:
        log.warning("setting an alert failed: %s", exc)
        return await _page(request, form=form, error=UNAVAILABLE, status=503)
    if wait:
        error = f"Too many alerts set from your address: try again in {int(wait) + 1} s."
        return await _page(request, form=form, error=error, status=429)
    outcome: list[Added] = []
    try:
        return await _store(request, alerts, form, symbol, address, outcome)
    finally:
        if outcome != [Added.ADDED]:  # only stored alerts count against an address
            try:
                await alerts.store.refund(address)
            except BusUnavailable as exc:
                log.warning("could not refund an alert attempt: %s", exc)


async def _store(
    request: Request,
    alerts: Alerts,
    form: dict[str, str],
    symbol: str,
    address: str,
    outcome: list[Added],
) -> Response:
    """The rest of POST /alerts, once the address may store one: `outcome` gets what the store
    said, if it was asked."""
    svc = services(request)
    quote = (await priced(svc, [symbol], address)).get(symbol)
    if quote is None and svc.hub.acceptance.reason(symbol) is not None:  # the provider said so
        error = f"Unknown symbol “{symbol}”: the {svc.feed.name} feed cannot price it."
        return await _page(request, form=form, error=error, status=422)
    if quote is None:
        error = f"{symbol} has no price yet, so no alert can be set on it: try again in a moment."
        return await _page(request, form=form, error=error, status=422)
    cookie = None
    try:
        owner = await owner_of(request, alerts)
        if owner is None:
            owner, cookie = (await alerts.identities()).issue()
        now_ms = int(time.time() * 1000)
        alert = build(
            owner=owner, symbol=symbol, kind=form["kind"], value=form["value"],
            note=form["note"], last=Decimal(quote.price), now_ms=now_ms,
        )  # fmt: skip
        stored = await alerts.store.add(
            alert, alerts.limit, max_symbols=alerts.max_symbols, now_ms=now_ms
        )
        outcome.append(stored)
    except InvalidAlert as exc:
        return await _page(request, form=form, error=str(exc), status=422)
    except BusUnavailable as exc:
        log.warning("setting an alert failed: %s", exc)
        return await _page(request, form=form, error=UNAVAILABLE, status=503)
    if stored is Added.OWNER_FULL:
        error = (
            f"You have {alerts.limit} alerts, the most allowed: remove one before setting another."
        )
        return await _page(request, form=form, error=error, status=422)
    if stored is Added.SYMBOLS_FULL:
        error = (
            f"Alerts are set on {alerts.max_symbols} symbols already, the most this server "
            f"watches for alerts: {symbol} is not one of them. Set it on one of those, or later."
        )
        return await _page(request, form=form, error=error, status=422)
    if stored is Added.STORE_FULL:
        full = f"alert refused: the deployment holds {MAX_ALERTS} alerts, its most"
        client_noise.note("alerts_store_full", full, log)
        error = "This server holds all the alerts it can: try again later."
        return await _page(request, form=form, error=error, status=503)
    alerts.counts["set"] += 1
    log.info("alert set on %s: %s", symbol, alert.condition())
    response = RedirectResponse(f"/alerts?set={alert.id}", status_code=303)
    if cookie is not None:
        response.set_cookie(
            COOKIE, cookie, max_age=COOKIE_MAX_AGE, path="/",
            secure=request.url.scheme == "https", httponly=True, samesite="lax",
        )  # fmt: skip
    return response


async def remove(request: Request) -> Response:
    """POST /alerts/{alert_id}/remove"""
    alerts = services(request).alerts
    alert_id = request.path_params["alert_id"][:32]
    try:
        owner = await owner_of(request, alerts)
        removed = owner is not None and await alerts.store.remove(owner, alert_id)
    except BusUnavailable as exc:
        log.warning("removing an alert failed: %s", exc)
        return await _page(request, form={"kind": "above"}, error=UNAVAILABLE, status=503)
    if removed:
        alerts.counts["removed"] += 1
    return RedirectResponse("/alerts?removed=1" if removed else "/alerts", status_code=303)


async def attach(conn: HTTPConnection, outbox: Outbox) -> str | None:
    """A WebSocket connection's alerts: its owner (None: it has none), now delivered to it, and
    what fired while no tab was open queued after its welcome."""
    alerts = services(conn).alerts
    try:
        owner = await owner_of(conn, alerts)
    except BusUnavailable as exc:
        log.warning("alerts not delivered to a new connection: %s", exc)
        return None
    if owner is not None:
        await alerts.delivery.welcome(owner, outbox)
    return owner


def detach(conn: HTTPConnection, owner: str | None, outbox: Outbox) -> None:
    if owner is not None:
        services(conn).alerts.delivery.detach(owner, outbox)
