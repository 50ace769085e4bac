"""NSE India's website: the JSON behind nseindia.com's pages. Unofficial, keyless, opt-in.

Shapes (providers.md section 5). There is no API contract: these are the site's own XHR endpoints.

- **Session.** A browser-like first visit (`GET /` with a browser's headers) sets the bot-manager
  cookies (`nsit`, `nseappid`); every API call carries them, with a browser `User-Agent`, a
  `Referer` on the site and `X-Requested-With`. The cookies are renewed every `session_ttl`
  seconds (they expire after about five minutes) and at once after any refusal.
- **Equities**: `GET /api/NextApi/apiClient/GetQuoteApi?functionName=getSymbolData&marketType=N
  &series=EQ&symbol=RELIANCE`, one call per symbol: `equityResponse[0]` with `metaData`,
  `tradeInfo`, `orderBook` and an IST `lastUpdateTime`. The legacy `/api/quote-equity` shape
  (`info`, `priceInfo`, `metadata`) is read too, should it come back. Numbers may be numeric
  strings with Indian digit grouping (`"98,76,543"`).
- **Indices** (NIFTY 50, NIFTY BANK): one `GET /api/allIndices` for all of them.
- **Refusals** are HTML, not JSON: a 401 "UnauthorizedError" page without cookies, a 403 Akamai
  "Access Denied" page when the address is blocked (cloud and datacenter addresses usually are).
  Blocked addresses are often not refused at all: the request hangs until the timeout. Each is a
  `FeedUnavailable` (so the breaker counts it) and drops the cookies, so the next call starts
  with a fresh visit.

Every quote is exchange `NSE`, currency INR; the market-open flag is left to the exchange
calendar (the chain fills it). NSE sells real-time data commercially: this reads what its public
pages show, for personal use, and may break whenever the site changes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx

from app import sessions
from app.feeds.base import FeedError, FeedUnavailable, FetchResult
from app.feeds.http import dec, derive, fetch_each, get_json, or_price, volume_of
from app.feeds.universe import BY_SYMBOL
from app.models import Quote

_IST = sessions.MARKETS["NSE"].zone  # NSE stamps its times in India time, without a zone
_BROWSER = {
    "User-Agent": (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/134.0.0.0 Safari/537.36"
    ),
    "Accept-Language": "en-US,en;q=0.9",
}
_PAGE = {**_BROWSER, "Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
_XHR = {
    **_BROWSER,
    "Accept": "application/json, text/plain, */*",
    "X-Requested-With": "XMLHttpRequest",
    "Sec-Fetch-Site": "same-origin",
    "Sec-Fetch-Mode": "cors",
    "Sec-Fetch-Dest": "empty",
}
_TIME_FORMATS = ("%d-%b-%Y %H:%M:%S", "%d-%b-%Y %H:%M")


def provider_symbol(symbol: str) -> str:
    return symbol.removesuffix(":NSE")


def parse_ist(text: object) -> int:
    """NSE's `15-Jan-2025 15:30:00` (IST, optionally "As on ... IST") in epoch ms; 0 if unknown."""
    if not isinstance(text, str):
        return 0
    clean = text.strip().removeprefix("As on").removesuffix("IST").strip()
    for pattern in _TIME_FORMATS:
        try:
            moment = datetime.strptime(clean, pattern).replace(tzinfo=_IST)
        except ValueError:
            continue
        return int(moment.timestamp() * 1000)
    return 0


class NseFeed:
    name = "nse"

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str = "https://www.nseindia.com",
        timeout: float = 5.0,
        session_ttl: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._base = base_url.rstrip("/")
        self._timeout = timeout
        self._session_ttl = session_ttl
        self._clock = clock
        # The Cookie header of the current session and when it was set up (None: no session).
        self._cookie: str | None = None
        self._since = 0.0
        self._visit_lock = asyncio.Lock()

    def check_symbol(self, symbol: str) -> str | None:
        inst = BY_SYMBOL.get(provider_symbol(symbol))
        if ":" in symbol and not symbol.endswith(":NSE"):
            return f"{symbol}: nse serves NSE symbols only"
        if inst is not None and inst.exchange != "NSE":
            return f"{symbol}: nse serves NSE symbols only ({inst.exchange})"
        return None

    async def fetch(self, symbols: Sequence[str]) -> FetchResult:
        await self._ensure_session()
        indices = [s for s in symbols if _is_index(s)]
        equities = [s for s in symbols if not _is_index(s)]
        result = FetchResult()
        if equities:
            result = await fetch_each(self.name, equities, self._equity, concurrent=True)
        if indices:
            try:
                found = await self._indices(indices)
            except FeedError:
                if not result.quotes:
                    raise
            else:
                result.quotes.extend(found.quotes)
                result.rejected.update(found.rejected)
        return result

    # ---- session -----------------------------------------------------------------------------

    async def _ensure_session(self) -> None:
        async with self._visit_lock:
            fresh = self._clock() - self._since < self._session_ttl
            if self._cookie is not None and fresh:
                return
            self._cookie = None
            try:
                response = await self._client.get(
                    self._base + "/", headers=_PAGE, timeout=self._timeout
                )
            except httpx.TimeoutException:
                raise FeedUnavailable(
                    f"{self.name}: the home page did not answer within {self._timeout:g}s "
                    "(NSE often lets blocked addresses hang)"
                ) from None
            except httpx.HTTPError as exc:
                raise FeedUnavailable(
                    f"{self.name}: the home page failed ({type(exc).__name__})"
                ) from None
            if response.status_code >= 400:
                raise FeedUnavailable(f"{self.name}: {_refusal(response)} on the home page")
            jar = {c.name: c.value for c in response.cookies.jar}
            if not jar:
                raise FeedUnavailable(f"{self.name}: the home page set no session cookies")
            self._cookie = "; ".join(f"{k}={v}" for k, v in jar.items())
            self._since = self._clock()

    async def _api(self, path: str, params: Mapping[str, str], referer: str) -> Any:
        headers = {**_XHR, "Referer": self._base + referer, "Cookie": self._cookie or ""}
        try:
            reply = await get_json(
                self._client, self.name, self._base + path, params=params, headers=headers,
                timeout=self._timeout,
            )  # fmt: skip
        except FeedUnavailable as exc:
            self._cookie = None  # a block page or a hang: start again with a fresh visit
            hint = (
                "the session cookies were refused"
                if "HTTP 401" in str(exc)
                else "blocked? NSE refuses or ignores most cloud addresses"
            )
            raise FeedUnavailable(f"{exc} ({hint})") from None
        if reply.status in (401, 403):
            self._cookie = None
            raise FeedUnavailable(f"{self.name}: refused (HTTP {reply.status})")
        if reply.status >= 400:
            raise FeedUnavailable(f"{self.name}: HTTP {reply.status}")
        return reply.body

    # ---- equities ----------------------------------------------------------------------------

    async def _equity(self, symbol: str) -> Quote | str:
        code = provider_symbol(symbol)
        body = await self._api(
            "/api/NextApi/apiClient/GetQuoteApi",
            {"functionName": "getSymbolData", "marketType": "N", "series": "EQ", "symbol": code},
            f"/get-quotes/equity?symbol={code}",
        )
        if not isinstance(body, dict):
            raise FeedUnavailable(f"{self.name}: unexpected quote body")
        if "priceInfo" in body:
            return self._legacy(symbol, body)
        found = body.get("equityResponse")
        if not isinstance(found, list):
            raise FeedUnavailable(f"{self.name}: unexpected quote body")
        if not found or not isinstance(found[0], dict):
            return f"{symbol}: nse has no quote for this symbol"
        entry = found[0]
        meta = _dict(entry.get("metaData"))
        trade = _dict(entry.get("tradeInfo"))
        book = _dict(entry.get("orderBook"))
        price = dec(trade.get("lastPrice")) or dec(book.get("lastPrice"))
        if not price:
            return f"{symbol}: nse returned no price"
        change, pct, prev = derive(
            price, dec(meta.get("previousClose")), dec(meta.get("change")), dec(meta.get("pChange"))
        )
        return self._quote(
            symbol, price, change, pct, prev,
            (meta.get("open"), meta.get("dayHigh"), meta.get("dayLow")),
            volume_of(trade.get("totalTradedVolume")), meta.get("companyName"),
            parse_ist(entry.get("lastUpdateTime")),
        )  # fmt: skip

    def _legacy(self, symbol: str, body: dict[str, Any]) -> Quote | str:
        info = _dict(body.get("priceInfo"))
        price = dec(info.get("lastPrice"))
        if not price:
            return f"{symbol}: nse returned no price"
        change, pct, prev = derive(
            price, dec(info.get("previousClose")), dec(info.get("change")), dec(info.get("pChange"))
        )
        span = _dict(info.get("intraDayHighLow"))
        return self._quote(
            symbol, price, change, pct, prev, (info.get("open"), span.get("max"), span.get("min")),
            None, _dict(body.get("info")).get("companyName"),
            parse_ist(_dict(body.get("metadata")).get("lastUpdateTime")),
        )  # fmt: skip

    # ---- indices -----------------------------------------------------------------------------

    async def _indices(self, symbols: Sequence[str]) -> FetchResult:
        body = await self._api("/api/allIndices", {}, "/market-data/live-market-indices")
        rows = body.get("data") if isinstance(body, dict) else None
        if not isinstance(rows, list):
            raise FeedUnavailable(f"{self.name}: unexpected indices body")
        by_name = {r.get("index"): r for r in rows if isinstance(r, dict)}
        stamp = parse_ist(body.get("timestamp"))
        result = FetchResult()
        for symbol in symbols:
            row = by_name.get(provider_symbol(symbol))
            price = dec(row.get("last")) if row is not None else None
            if row is None or not price:
                result.rejected[symbol] = f"{symbol}: nse lists no such index"
                continue
            change, pct, prev = derive(
                price, dec(row.get("previousClose")), dec(row.get("variation")),
                dec(row.get("percentChange")),
            )  # fmt: skip
            result.quotes.append(
                self._quote(
                    symbol,
                    price,
                    change,
                    pct,
                    prev,
                    (row.get("open"), row.get("high"), row.get("low")),
                    None,
                    None,
                    stamp,
                )  # fmt: skip
            )
        return result

    def _quote(
        self,
        symbol: str,
        price: Decimal,
        change: Decimal,
        pct: Decimal,
        prev: Decimal,
        day: tuple[object, object, object],
        volume: int | None,
        name: object,
        source_time: int,
    ) -> Quote:
        inst = BY_SYMBOL.get(provider_symbol(symbol))
        return Quote(
            symbol=symbol,
            price=price,
            change=change,
            change_pct=pct,
            open=or_price(day[0], price),
            high=or_price(day[1], price),
            low=or_price(day[2], price),
            prev_close=prev,
            volume=volume,
            currency="INR",
            exchange="NSE",
            name=inst.name if inst is not None else str(name or symbol),
            source=self.name,
            source_time=source_time,
            market_open=None,
        )


def _is_index(symbol: str) -> bool:
    inst = BY_SYMBOL.get(provider_symbol(symbol))
    return inst is not None and inst.daily_volume == 0


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _refusal(response: httpx.Response) -> str:
    text = response.text[:2000]
    if "Access Denied" in text:
        return f"blocked (HTTP {response.status_code} Access Denied page)"
    if "Unauthorized" in text:
        return f"no session (HTTP {response.status_code} Unauthorized page)"
    return f"HTTP {response.status_code}"
