"""The dashboard and its watchlist: which symbols a visitor follows, kept in a cookie.

Adding and removing are plain form posts (so they work without JavaScript: the server redirects
back to `/`), and htmx posts the same forms and swaps in the `_watchlist.html` partial that the
response renders. Symbols are validated on the server by app.core.acceptance.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from app import export
from app.clients import client_of
from app.endpoints.pages import (
    WATCHLIST_COOKIE,
    priced,
    refusals,
    render,
    watchlist,
)
from app.services import services
from app.sparkline import sparklines
from app.symbols import InvalidSymbol, normalize_symbol

COOKIE_MAX_AGE = 400 * 24 * 3600  # the longest browsers keep a cookie
MAX_FORM_BYTES = 4096


def _current(request: Request) -> list[str]:
    svc = services(request)
    settings = svc.settings
    symbols = watchlist(request, settings.default_watchlist, settings.max_symbols_per_connection)
    return [s for s in symbols if svc.hub.acceptance.listed(s)]


async def _render(
    request: Request,
    symbols: list[str],
    *,
    partial: bool,
    error: str = "",
    notice: str = "",
    entered: str = "",
    status: int = 200,
) -> Response:
    svc = services(request)
    found = await priced(svc, symbols, client_of(request.scope))
    return render(
        request,
        "_watchlist.html" if partial else "dashboard.html",
        "dashboard",
        status=status,
        shown=found.values(),
        rows=[(s, found.get(s)) for s in symbols],
        refusals=refusals(svc, symbols),
        sparks=await sparklines(svc.history, symbols, found),
        error=error,
        notice=notice,
        entered=entered,
    )


async def dashboard(request: Request) -> Response:
    return await _render(request, _current(request), partial=False)


async def download(request: Request) -> Response:
    """GET /watchlist.csv: the dashboard's watchlist as a CSV attachment (app.export).
    Bounded like the page: the cookie holds at most MAX_SYMBOLS_PER_CONNECTION symbols."""
    symbols = _current(request)
    found = await priced(services(request), symbols, client_of(request.scope))
    now = time.time()
    body = export.watchlist_csv([(s, found.get(s)) for s in symbols], int(now * 1000))
    name = export.filename(datetime.fromtimestamp(now, UTC))
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        },
    )


async def add(request: Request) -> Response:
    """POST /watchlist (form field `symbol`; `at`, the 0-based place to put it, is how an undo
    puts a removed row back where it was: anything but a number there means the end)."""
    body = (await request.body())[:MAX_FORM_BYTES].decode(errors="replace")
    form = parse_qs(body)
    raw = (form.get("symbol") or [""])[0].strip()
    at = (form.get("at") or [""])[0]
    symbols = _current(request)
    error = notice = ""
    try:
        symbol = normalize_symbol(raw)
    except InvalidSymbol as exc:
        symbol = ""
        error = f"“{raw[:32]}” is not a valid symbol: {exc}." if raw else "Type a symbol to add."
    svc = services(request)
    if not error:
        reason = svc.hub.acceptance.reason(symbol)
        if reason is not None:
            error = f"Unknown symbol “{symbol}”: the {svc.feed.name} feed does not list it."
        elif symbol in symbols:
            notice = f"{symbol} is already on your watchlist."
        elif len(symbols) >= svc.settings.max_symbols_per_connection:
            error = f"Your watchlist is full ({len(symbols)} symbols): remove one first."
        else:
            place = int(at) if at.isascii() and at.isdigit() and len(at) <= 3 else len(symbols)
            symbols.insert(place, symbol)  # past the end: at the end
            notice = f"Added {symbol}."
    return await _respond(
        request, symbols, error=error, notice=notice, entered=raw if error else ""
    )


async def remove(request: Request) -> Response:
    """DELETE /watchlist/{symbol} (htmx) or POST /watchlist/{symbol}/remove (plain form)."""
    symbols = _current(request)
    try:
        symbol = normalize_symbol(request.path_params["symbol"])
    except InvalidSymbol:
        symbol = ""
    notice = ""
    if symbol in symbols:
        symbols.remove(symbol)
        notice = f"Removed {symbol}."
    return await _respond(request, symbols, notice=notice)


async def _respond(
    request: Request, symbols: list[str], *, error: str = "", notice: str = "", entered: str = ""
) -> Response:
    htmx = request.headers.get("hx-request") == "true"
    response: Response
    if htmx:
        response = await _render(
            request, symbols, partial=True, error=error, notice=notice, entered=entered
        )
    elif error:
        # Without JavaScript: show the page again with the message, and keep what was typed.
        response = await _render(
            request, symbols, partial=False, error=error, entered=entered, status=422
        )
    else:
        response = RedirectResponse("/", status_code=303)
    if not error:
        response.set_cookie(
            WATCHLIST_COOKIE,
            ",".join(symbols),
            max_age=COOKIE_MAX_AGE,
            path="/",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="lax",
        )
    return response
