"""A fake of the three market-data APIs: real HTTP on a free loopback port, in a thread.

It serves the shapes of providers.md (Twelve Data under `/td`, Finnhub under `/fh`, Alpha Vantage
at `/av/query`), checks each provider's key the way the provider takes it, counts calls, and is
switched per test into the failure scenarios of providers.md section 7.4 by setting `mode`:

- Twelve Data: ok, minute (minute 429 text), day (day 429 text), key (401 text), down (500),
  html (403 block page), garbage (truncated JSON), slow; `error_status` is the HTTP status error
  bodies come with (200, as historically, or the real 4xx/429).
- Finnhub: ok, limit (429 + X-Ratelimit-*), key (401), down, slow.
- Alpha Vantage (all HTTP 200): ok, note (legacy per-minute Note), daily (Information, 25/day),
  sparingly (late-2025 Information), premium, badkey (Error Message), echo (a notice quoting the
  key back), html.
- NSE India's website (under `/nse`): the home page sets the `nsit` and `nseappid` cookies, and
  the API answers only calls carrying both and a browser User-Agent (else the 401 HTML page).
  Modes: ok, legacy (the old quote-equity shape), akamai (403 Access Denied page on the API),
  unauthorized (the 401 page on the API, as when cookies expire), homeblock (403 on the home
  page), hang (the API answers after `delay` seconds, as for blocked cloud addresses).

Prices move by a cent per call, so every answer is a changed quote, except for `frozen` symbols
(a quiet market); `silent` ones are left out of Twelve Data's batch answers. `unknown` symbols
get each provider's not-found answer (per-symbol error, all-zero quote, empty Global Quote).
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support import free_port, wait_for

KEYS = {"td": "td-secret-key-123", "fh": "fh-secret-key-456", "av": "av-secret-key-789"}
TD_MINUTE = (
    "You have run out of API credits for the current minute. 9 API credits were used, with the "
    "current limit being 8. Wait for the next minute or consider switching to a higher tier plan "
    "at https://twelvedata.com/pricing"
)
TD_DAY = (
    "You have run out of API credits for the day. 882 API credits were used, with the current "
    "limit being 800. Wait for the next day or consider switching to a paid plan at "
    "https://twelvedata.com/pricing"
)
TD_KEY = (
    "**apikey** parameter is incorrect or not specified. You can get your free API key instantly "
    "following this link: https://twelvedata.com/pricing. If you believe that everything is "
    "correct, you can contact us at https://twelvedata.com/contact/customer"
)
TD_NOT_FOUND = (
    "**symbol** or **figi** parameter is missing or invalid. Please provide a valid symbol "
    "according to API documentation: https://twelvedata.com/docs#reference-data"
)
AV_NOTE = (
    "Thank you for using Alpha Vantage! Our standard API call frequency is 5 calls per minute and "
    "500 calls per day. Please visit https://www.alphavantage.co/premium/ if you would like to "
    "target a higher API call frequency."
)
AV_DAILY = (
    "Thank you for using Alpha Vantage! Our standard API rate limit is 25 requests per day. Please "
    "subscribe to any of the premium plans at https://www.alphavantage.co/premium/ to instantly "
    "remove all daily rate limits."
)
AV_SPARINGLY = (
    "Thank you for using Alpha Vantage! Please consider spreading out your free API requests more "
    "sparingly. You may subscribe to any of the premium plans at https://www.alphavantage.co/premium/"
    " to lift the free key rate limit (25 requests per day) and instantly unlock all premium "
    "endpoints"
)
AV_PREMIUM = (
    "Thank you for using Alpha Vantage! This is a premium endpoint. You may subscribe to any of "
    "the premium plans at https://www.alphavantage.co/premium/ to instantly unlock all premium "
    "endpoints"
)
AV_BAD_KEY = (
    "the parameter apikey is invalid or missing. Please claim your free API key on "
    "(https://www.alphavantage.co/support/#api-key). It should take less than 20 seconds."
)
NSE_UNAUTHORIZED = (
    "<html><body><h1>UnauthorizedError: No authorization token was found</h1></body></html>"
)
NSE_COOKIES = {"nsit": "nsit-abc123", "nseappid": "appid-xyz789"}
NSE_UPDATED = "15-Jan-2025 15:30:00"
HTML_BLOCK = (
    "<HTML><HEAD><TITLE>Access Denied</TITLE></HEAD><BODY><H1>Access Denied</H1> You don't have "
    'permission to access "/quote?" on this server.<P>Reference errors.edgesuite.net</BODY></HTML>'
)
# symbol -> (previous close, name, exchange, currency, MIC)
INSTRUMENTS = {
    "AAPL": ("233.28", "Apple Inc", "NASDAQ", "USD", "XNGS"),
    "MSFT": ("423.10", "Microsoft Corporation", "NASDAQ", "USD", "XNGS"),
    "RELIANCE": ("1259.80", "Reliance Industries Limited", "NSE", "INR", "XNSE"),
    "IBM": ("221.50", "International Business Machines", "NYSE", "USD", "XNYS"),
}
LAST_QUOTE_AT = 1736974740


@dataclass
class FakeState:
    mode: dict[str, str] = field(
        default_factory=lambda: {"td": "ok", "fh": "ok", "av": "ok", "nse": "ok"}
    )
    error_status: int = 200
    delay: float = 2.0
    unknown: set[str] = field(default_factory=lambda: {"NOTATICKER", "NOPE"})
    frozen: set[str] = field(default_factory=set)  # a quiet market: the price never moves
    silent: set[str] = field(default_factory=set)  # left out of batch answers (Twelve Data)
    null_fields: bool = False
    credits_left: int | None = None
    calls: Counter[str] = field(default_factory=Counter)
    symbols_asked: Counter[str] = field(default_factory=Counter)
    seen_urls: list[str] = field(default_factory=list)
    seen_headers: list[dict[str, str]] = field(default_factory=list)
    # Prices a test sets (by the symbol as asked for), instead of the slow climb below.
    prices: dict[str, Decimal] = field(default_factory=dict)

    def price(self, symbol: str) -> Decimal:
        if symbol in self.prices:
            return self.prices[symbol]
        prev = Decimal(INSTRUMENTS.get(symbol.split(":")[0], ("100.00",))[0])
        moves = 0 if symbol in self.frozen else self.symbols_asked[symbol]
        return prev + Decimal("4.59") + Decimal("0.01") * moves


class FakeProviders:
    def __init__(self) -> None:
        self.state = FakeState()
        self.port = free_port()
        self.app = Starlette(
            routes=[
                Route("/td/quote", self._twelvedata),
                Route("/fh/quote", self._finnhub),
                Route("/av/query", self._alphavantage),
                Route("/nse/", self._nse_home),
                Route("/nse/api/NextApi/apiClient/GetQuoteApi", self._nse_quote),
                Route("/nse/api/quote-equity", self._nse_quote),
                Route("/nse/api/allIndices", self._nse_indices),
            ]
        )
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off",
            ws="none", timeout_graceful_shutdown=1,
        )  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def url(self, provider: str) -> str:
        return f"http://127.0.0.1:{self.port}/{provider}" + ("/query" if provider == "av" else "")

    def reset(self) -> None:
        self.state = FakeState()

    def start(self) -> None:
        self.thread.start()
        wait_for(lambda: self.server.started, 10, "the fake provider server")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def _record(self, provider: str, request: Request) -> str:
        state = self.state
        state.calls[provider] += 1
        state.seen_urls.append(str(request.url))
        state.seen_headers.append(dict(request.headers))
        return state.mode[provider]

    # ---- Twelve Data -------------------------------------------------------------------------

    def _td_error(self, code: int, message: str) -> Response:
        status = code if self.state.error_status != 200 else 200
        return JSONResponse({"code": code, "message": message, "status": "error"}, status)

    async def _twelvedata(self, request: Request) -> Response:
        mode = self._record("td", request)
        if mode == "slow":
            await asyncio.sleep(self.state.delay)
        if request.headers.get("authorization") != f"apikey {KEYS['td']}" or mode == "key":
            return self._td_error(401, TD_KEY)
        simple = {
            "minute": lambda: self._td_error(429, TD_MINUTE),
            "day": lambda: self._td_error(429, TD_DAY),
            "down": lambda: Response("upstream timeout", 502),
            "html": lambda: Response(HTML_BLOCK, 403, media_type="text/html"),
            "garbage": lambda: Response(
                b'{"AAPL": {"symbol": "AA', 200, media_type="application/json"
            ),
        }
        if mode in simple:
            return simple[mode]()
        symbols = request.query_params.get("symbol", "").split(",")
        answers = {s: self._td_quote(s) for s in symbols if s not in self.state.silent}
        if len(symbols) == 1:
            return JSONResponse(answers[symbols[0]])
        used = len(symbols)
        headers = {"api-credits-used": str(used)}
        if self.state.credits_left is not None:
            headers["api-credits-left"] = str(self.state.credits_left)
        return JSONResponse(answers, headers=headers)

    def _td_quote(self, symbol: str) -> dict[str, Any]:
        base = symbol.split(":")[0]
        self.state.symbols_asked[symbol] += 1
        if base in self.state.unknown:
            return {"code": 404, "message": TD_NOT_FOUND, "status": "error"}
        prev, name, exchange, currency, mic = INSTRUMENTS.get(
            base, ("100.00", base, "NASDAQ", "USD", "XNGS")
        )
        price = self.state.price(symbol)
        prev_d = Decimal(prev)
        nulls = self.state.null_fields
        return {
            "symbol": base, "name": name, "exchange": exchange, "mic_code": mic,
            "currency": currency, "datetime": "2025-01-15", "timestamp": 1736917200,
            "last_quote_at": LAST_QUOTE_AT, "open": f"{Decimal(prev) + 1:.5f}",
            "high": f"{price + 1:.5f}", "low": f"{Decimal(prev) - 1:.5f}", "close": f"{price:.5f}",
            "volume": None if nulls else "39832012", "previous_close": f"{Decimal(prev):.5f}",
            "change": None if nulls else f"{price - Decimal(prev):.5f}",
            "percent_change": None if nulls else f"{(price - prev_d) / prev_d * 100:.5f}",
            "average_volume": "47012345", "is_market_open": exchange != "NSE",
        }  # fmt: skip

    # ---- Finnhub -----------------------------------------------------------------------------

    async def _finnhub(self, request: Request) -> Response:
        mode = self._record("fh", request)
        if mode == "slow":
            await asyncio.sleep(self.state.delay)
        if request.headers.get("x-finnhub-token") != KEYS["fh"] or mode == "key":
            return JSONResponse({"error": "Invalid API key"}, 401)
        if mode == "limit":
            return JSONResponse(
                {"error": "API limit reached. Please try again later. Remaining Limit: 0"}, 429,
                headers={"X-Ratelimit-Limit": "60", "X-Ratelimit-Remaining": "0",
                         "X-Ratelimit-Reset": "1736974800"},
            )  # fmt: skip
        if mode == "down":
            return Response("<html><body>502 Bad Gateway</body></html>", 502)
        symbol = request.query_params.get("symbol", "")
        self.state.symbols_asked[symbol] += 1
        if symbol.endswith(".NS"):
            return JSONResponse({"error": "You don't have access to this resource."}, 403)
        if symbol in self.state.unknown:
            return JSONResponse(
                {"c": 0, "d": None, "dp": None, "h": 0, "l": 0, "o": 0, "pc": 0, "t": 0}
            )
        prev = Decimal(INSTRUMENTS.get(symbol, ("100.00",))[0])
        price = self.state.price(symbol)
        return JSONResponse({
            "c": float(price), "d": None if self.state.null_fields else float(price - prev),
            "dp": None if self.state.null_fields else 1.9676, "h": float(price + 1),
            "l": float(prev - 1), "o": float(prev + 1), "pc": float(prev), "t": LAST_QUOTE_AT,
        })  # fmt: skip

    # ---- Alpha Vantage -----------------------------------------------------------------------

    async def _alphavantage(self, request: Request) -> Response:
        mode = self._record("av", request)
        params = request.query_params
        notices = {
            "note": {"Note": AV_NOTE},
            "daily": {"Information": AV_DAILY},
            "sparingly": {"Information": AV_SPARINGLY},
            "premium": {"Information": AV_PREMIUM},
            "echo": {"Information": f"We have detected your API key as {KEYS['av']} and our "
                     "standard API rate limit is 25 requests per day."},
        }  # fmt: skip
        if params.get("apikey") != KEYS["av"] or mode == "badkey":
            return JSONResponse({"Error Message": AV_BAD_KEY})
        if mode in notices:
            return JSONResponse(notices[mode])
        if mode == "html":
            return Response(HTML_BLOCK, 200, media_type="text/html")
        symbol = params.get("symbol", "")
        self.state.symbols_asked[symbol] += 1
        base = symbol.split(".")[0]
        if base in self.state.unknown:
            return JSONResponse({"Global Quote": {}})
        prev = Decimal(INSTRUMENTS.get(base, ("100.00",))[0])
        price = self.state.price(symbol)
        return JSONResponse({"Global Quote": {
            "01. symbol": symbol, "02. open": f"{prev + 1:.4f}", "03. high": f"{price + 1:.4f}",
            "04. low": f"{prev - 1:.4f}", "05. price": f"{price:.4f}", "06. volume": "412345",
            "07. latest trading day": "2025-01-15", "08. previous close": f"{prev:.4f}",
            "09. change": f"{price - prev:.4f}",
            "10. change percent": f"{(price - prev) / prev * 100:.4f}%",
        }})  # fmt: skip

    # ---- NSE India's website -------------------------------------------------------------------

    async def _nse_home(self, request: Request) -> Response:
        self.state.calls["nse_home"] += 1
        if self.state.mode["nse"] == "homeblock":
            return Response(HTML_BLOCK, 403, media_type="text/html")
        page = Response("<html><body>NSE</body></html>", media_type="text/html")
        for name, value in NSE_COOKIES.items():
            page.set_cookie(name, value, path="/", httponly=True)
        return page

    async def _nse_gate(self, request: Request) -> tuple[str, Response | None]:
        """What every NSE data endpoint does first: count the call, hang if asked to, and refuse
        what the real site refuses; (the scripted mode, the refusal or None)."""
        mode = self._record("nse", request)
        if mode == "hang":
            await asyncio.sleep(self.state.delay)
        return mode, self._nse_refusal(request, mode)

    def _nse_refusal(self, request: Request, mode: str) -> Response | None:
        if mode == "akamai":
            return Response(HTML_BLOCK, 403, media_type="text/html")
        cookies = request.cookies
        browser = "Mozilla" in request.headers.get("user-agent", "")
        signed_in = all(cookies.get(k) == v for k, v in NSE_COOKIES.items())
        if mode == "unauthorized" or not (browser and signed_in):
            return Response(NSE_UNAUTHORIZED, 401, media_type="text/html")
        return None

    async def _nse_quote(self, request: Request) -> Response:
        mode, refusal = await self._nse_gate(request)
        if refusal is not None:
            return refusal
        symbol = request.query_params.get("symbol", "")
        self.state.symbols_asked[symbol] += 1
        if symbol in self.state.unknown:
            return JSONResponse({"equityResponse": []})
        prev = Decimal(INSTRUMENTS.get(symbol, ("100.00",))[0])
        price = self.state.price(symbol)
        if mode == "legacy" or request.url.path.endswith("quote-equity"):
            return JSONResponse({
                "info": {"symbol": symbol, "companyName": f"{symbol} Limited"},
                "metadata": {"series": "EQ", "symbol": symbol, "lastUpdateTime": NSE_UPDATED},
                "priceInfo": {"lastPrice": float(price), "change": float(price - prev),
                              "pChange": 0.85, "previousClose": float(prev), "open": float(prev),
                              "intraDayHighLow": {"min": float(prev - 1), "max": float(price + 1),
                                                  "value": float(price)}},
            })  # fmt: skip
        # Numbers as NSE sends them: JSON numbers, and numeric strings with Indian grouping.
        return JSONResponse({"equityResponse": [{
            "metaData": {"symbol": symbol, "companyName": f"{symbol} Limited", "series": "EQ",
                         "open": float(prev + 1), "dayHigh": float(price + 1),
                         "dayLow": float(prev - 1), "previousClose": float(prev),
                         "change": f"{price - prev:.2f}", "pChange": "0.85"},
            "tradeInfo": {"lastPrice": float(price), "totalTradedVolume": "98,76,543"},
            "orderBook": {"lastPrice": float(price)},
            "lastUpdateTime": NSE_UPDATED,
        }]})  # fmt: skip

    async def _nse_indices(self, request: Request) -> Response:
        mode, refusal = await self._nse_gate(request)
        if refusal is not None:
            return refusal
        return JSONResponse({
            "timestamp": "15-Jan-2025 15:30", "advances": 30, "declines": 20, "unchanged": 0,
            "data": [
                {"index": "NIFTY 50", "indexSymbol": "NIFTY 50", "last": 23213.2,
                 "variation": 36.15, "percentChange": 0.16, "open": 23190.1, "high": 23250.0,
                 "low": 23150.5, "previousClose": 23177.05},
                {"index": "NIFTY BANK", "indexSymbol": "NIFTY BANK", "last": "49,278.70",
                 "variation": -120.3, "percentChange": -0.24, "open": 49400, "high": 49450.2,
                 "low": 49200.1, "previousClose": 49399.0},
            ],
        })  # fmt: skip


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeProviders]:
    server = FakeProviders()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fake(fake_server: FakeProviders) -> FakeProviders:
    """The session's fake provider server, reset to healthy answers for this test."""
    fake_server.reset()
    return fake_server
