"""Server-rendered pages. Prices are in the HTML before any script runs; htmx keeps them live."""

from __future__ import annotations

from urllib.parse import quote as urlquote

from starlette.requests import Request
from starlette.responses import HTMLResponse

from app.services import services
from app.symbols import InvalidSymbol, normalize_symbol

WATCHLIST_COOKIE = "watchlist"


def watchlist(request: Request, default: tuple[str, ...], limit: int) -> list[str]:
    """The visitor's symbols from the `watchlist` cookie (comma-separated), else the default."""
    raw = request.cookies.get(WATCHLIST_COOKIE, "")
    symbols: list[str] = []
    for part in raw.split(","):
        try:
            symbol = normalize_symbol(part)
        except InvalidSymbol:
            continue
        if symbol not in symbols:
            symbols.append(symbol)
    return symbols[:limit] or list(default)


async def dashboard(request: Request) -> HTMLResponse:
    svc = services(request)
    settings = svc.settings
    symbols = watchlist(request, settings.default_watchlist, settings.max_symbols_per_connection)
    symbols = [s for s in symbols if svc.feed.check_symbol(s) is None]
    found = {q.symbol: q for q in await svc.hub.snapshot(symbols)}
    html = svc.renderer.env.get_template("dashboard.html").render(
        rows=[(s, found.get(s)) for s in symbols],
        ws_url="/ws?format=html&symbols=" + ",".join(urlquote(s, safe="") for s in symbols),
        # Quota pacing may refresh each symbol less often than the poll interval: show the truth.
        interval=f"{svc.poller.refresh:.3g} s",
        source=svc.feed.name,
        static=lambda path: f"/static/{path}",
    )
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})
