"""Server-rendered pages: watchlist, market board, stock detail, and the HTML 404.

Every page has real prices in its HTML before any script runs: a symbol nobody watched yet is
watched for a moment (which makes the fetcher price it at once) and awaited briefly. The page's
script (static/app.js) then keeps the rows live over WebSocket, or long-poll when that fails.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import quote as urlquote

import orjson
from markupsafe import Markup
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from app.chart import geometry, time_axis, zone_name
from app.clients import client_of
from app.feeds.universe import is_index
from app.formats import HtmlFormat
from app.history import Point
from app.models import Quote, Refusal
from app.rendering import age_text, unreal_notice
from app.services import Services, services
from app.sparkline import sparklines
from app.symbols import InvalidSymbol, normalize_symbol, parse_symbol_list

MOVERS = 5
WATCHLIST_COOKIE = "watchlist"


def watchlist(request: Request, default: tuple[str, ...], limit: int) -> list[str]:
    """The visitor's symbols from the `watchlist` cookie (comma-separated), else the default.

    A cookie that is present but empty is an emptied watchlist, not a new visitor.
    """
    raw = request.cookies.get(WATCHLIST_COOKIE)
    if raw is None:
        return list(default)
    # Our own cookie holds at most `limit` parts; a longer (forged) one is cut there, unread.
    return parse_symbol_list(raw, max_parts=limit, skip_empty=True).symbols


# Points of history the stock page starts its chart with (the line then grows live).
CHART_POINTS = 600


def render(
    request: Request,
    template: str,
    page: str,
    status: int = 200,
    shown: Iterable[Quote | None] = (),
    **context: Any,
) -> HTMLResponse:
    """A full page (or partial) with what base.html needs: feed name, interval, static paths,
    and the not-market-data notice when any of the `shown` quotes is simulated or replayed."""
    svc = services(request)
    shown = list(shown)
    # When the prices shown were last confirmed current (static/js/quotes.js reads it).
    symbols = [q.symbol for q in shown if q is not None]
    now = int(time.time() * 1000)
    fresh = svc.hub.freshness.told(HtmlFormat(svc.renderer), symbols, svc.hub.refresh, now)
    html = svc.renderer.env.get_template(template).render(
        page=page,
        fresh_note=Markup(fresh.decode()),
        # Quota pacing may refresh each symbol less often than the poll interval: show the truth.
        interval=f"{svc.hub.refresh or svc.fetcher.refresh:.3g}",
        source=svc.feed.name,
        static=_static,
        sign_out=svc.access.enabled,
        unreal_notice=unreal_notice(shown),
        **context,
    )
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


def plain(
    request: Request,
    template: str,
    status: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    """A page without the live header and its scripts (`plain.html`): login, refusals."""
    env = services(request).renderer.env
    html = env.get_template(template).render(static=_static, **context)
    return HTMLResponse(html, status, headers={"Cache-Control": "no-store", **(headers or {})})


def _static(path: str) -> str:
    return f"/static/{path}"


async def priced(svc: Services, symbols: Sequence[str], client: str) -> dict[str, Quote]:
    """The latest quote of each symbol; waits up to about two fetch intervals for unpriced ones
    (not for symbols the provider is known to reject, nor for those that wait for admission,
    app.core.admission: nothing will come in time)."""
    hub = svc.hub
    found = {q.symbol: q for q in await hub.snapshot(symbols)}
    missing = [s for s in symbols if s not in found and hub.acceptance.refused(s) is None]
    if not missing:
        return found
    wait = min(2 * svc.settings.fetch_interval + 1, 3.0)

    def settled(quotes: list[Quote]) -> bool:  # priced, rejected or held back
        got = {q.symbol for q in quotes}
        return all(
            s in got or hub.acceptance.refused(s) is not None or not hub.admission.admitted(s)
            for s in missing
        )

    quotes, _ = await hub.await_quotes(missing, settled, wait, client)
    found.update((q.symbol, q) for q in quotes)
    return found


def refusals(svc: Services, symbols: Sequence[str]) -> dict[str, Refusal]:
    """Symbols the provider said it cannot price (and is not asked about again yet): their rows
    render in the rejected state, as the `html` wire format's `rejected` message does."""
    acceptance = svc.hub.acceptance
    found: dict[str, Refusal] = {}
    for symbol in symbols:
        refusal = acceptance.refusal(symbol)
        if refusal is not None:
            found[symbol] = refusal
    return found


async def market(request: Request) -> Response:
    svc = services(request)
    # The board is BOARD_SYMBOLS: the fetcher prices those whether watched or not, so the page
    # costs the (rate-limited) providers nothing extra.
    symbols = [s for s in svc.settings.board_symbols if svc.hub.acceptance.listed(s)]
    symbols = symbols[: svc.settings.max_symbols_per_connection]
    found = await priced(svc, symbols, client_of(request.scope))
    indices: list[tuple[str, Quote | None]] = []
    equities: list[tuple[str, Quote | None]] = []
    for symbol in symbols:
        q = found.get(symbol)
        (indices if q is not None and is_index(symbol, q.volume) else equities).append((symbol, q))
    # Movers rank like with like: equities against equities (indices have their own board).
    listed = [q for _, q in equities if q is not None]
    ranked = sorted(listed, key=lambda q: q.change_pct, reverse=True)
    return render(
        request,
        "market.html",
        "market",
        shown=[q for _, q in indices + equities],
        indices=indices,
        equities=equities,
        total=len(symbols),
        gainers=[q for q in ranked if q.change_pct > 0][:MOVERS],
        losers=[q for q in reversed(ranked) if q.change_pct < 0][:MOVERS],
        refusals=refusals(svc, symbols),
        sparks=await sparklines(svc.history, symbols, found),
    )


async def stock(request: Request) -> Response:
    svc = services(request)
    try:
        symbol = normalize_symbol(request.path_params["symbol"])
    except InvalidSymbol as exc:
        shown = request.path_params["symbol"][:32]
        raise HTTPException(404, f"“{shown}” is not a symbol: {exc}.") from None
    reason = svc.hub.acceptance.reason(symbol)
    if reason is not None:
        raise HTTPException(404, f"No stock “{symbol}” here: {reason}.")
    if request.path_params["symbol"] != symbol:
        return RedirectResponse(_stock_url(symbol), status_code=308)  # one URL per stock
    q = (await priced(svc, [symbol], client_of(request.scope))).get(symbol)
    line = await svc.history.line(symbol)
    points = line.points
    if q is not None and (not points or points[-1][0] < q.source_time):
        points.append((q.source_time, q.price))
    points = _thin(points, CHART_POINTS)
    settings = svc.settings
    watched = symbol in watchlist(
        request, settings.default_watchlist, settings.max_symbols_per_connection
    )
    return render(
        request,
        "stock.html",
        "stock",
        shown=[q],
        symbol=symbol,
        q=q,
        age=_age(q),
        points=orjson.dumps([[t, str(p)] for t, p in points]).decode(),
        chart=geometry(points, q.prev_close if q else None),
        chart_times=time_axis(points, q.exchange if q else ""),
        zone=zone_name(q.exchange if q else ""),
        chart_count=len(points),
        watched=watched,
        chart_note=line.note,
    )


async def lookup(request: Request) -> Response:
    """`/stock?symbol=tcs` (the header's search form) -> `/stock/TCS`."""
    raw = request.query_params.get("symbol", "")
    try:
        symbol = normalize_symbol(raw)
    except InvalidSymbol:
        return RedirectResponse("/market", status_code=303)
    return RedirectResponse(_stock_url(symbol), status_code=303)


def _stock_url(symbol: str) -> str:
    return "/stock/" + urlquote(symbol, safe="/")


async def not_found(request: Request, exc: Exception) -> Response:
    detail = exc.detail if isinstance(exc, HTTPException) else "Not found."
    if request.url.path.startswith(("/api/", "/static/")):
        return Response(str(detail), status_code=404, media_type="text/plain")
    message = detail if detail != "Not Found" else f"There is no page at {request.url.path}."
    return render(request, "404.html", "404", status=404, message=message)


def _thin(points: list[Point], limit: int) -> list[Point]:
    """At most `limit` points, evenly spaced, always keeping the last."""
    if len(points) <= limit:
        return points
    step = len(points) / (limit - 1)
    return [points[int(i * step)] for i in range(limit - 1)] + [points[-1]]


def _age(q: Quote | None) -> str:
    if q is None:
        return "—"
    return age_text(time.time() - q.source_time / 1000)
