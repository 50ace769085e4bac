"""Finnhub: `GET /quote?symbol=AAPL`, one call per symbol, US stocks on the free plan.

Shapes (providers.md section 3): numbers are JSON numbers; an unknown or unentitled symbol is
HTTP 200 with every field zero (`c == 0 and t == 0`); errors are HTTP 4xx/429 with
`{"error": "..."}`: 429 is the plan's rate limit (with `X-Ratelimit-Reset`, epoch seconds),
403 means this symbol or market is not in the plan, 401 a bad key. `/quote` has no volume,
currency or exchange: USD is implied (the free plan is US-only); exchange and name come from the
reference universe when known. The key travels in the `X-Finnhub-Token` header.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from app.feeds.base import FeedRateLimited, FeedRejected, FeedUnavailable, FetchResult
from app.feeds.http import clean_message, dec, derive, fetch_each, get_json, or_price
from app.feeds.universe import BY_SYMBOL
from app.models import Quote

_NOT_US = ("NSE", "BSE")


class FinnhubFeed:
    name = "finnhub"

    def __init__(
        self,
        client: httpx.AsyncClient,
        api_key: str,
        base_url: str = "https://finnhub.io/api/v1",
        timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._key = api_key
        self._url = base_url.rstrip("/") + "/quote"
        self._timeout = timeout
        self._clock = clock

    def check_symbol(self, symbol: str) -> str | None:
        inst = BY_SYMBOL.get(symbol)
        exchange = symbol.rpartition(":")[2] if ":" in symbol else None
        if exchange in _NOT_US or (inst is not None and inst.exchange in _NOT_US):
            return f"{symbol}: finnhub serves US symbols only"
        if inst is not None and not inst.daily_volume:
            return f"{symbol}: finnhub does not quote indices"
        return None

    async def fetch(self, symbols: Sequence[str]) -> FetchResult:
        return await fetch_each(self.name, symbols, self._one, concurrent=True)

    async def _one(self, symbol: str) -> Quote | str:
        reply = await get_json(
            self._client,
            self.name,
            self._url,
            params={"symbol": symbol},
            headers={"X-Finnhub-Token": self._key},
            timeout=self._timeout,
        )
        body = reply.body
        text = clean_message(body.get("error"), self._key) if isinstance(body, dict) else ""
        if reply.status == 429:
            reset = dec(reply.headers.get("x-ratelimit-reset"))
            wait = max(float(reset) - self._clock(), 0.0) if reset is not None else 0.0
            raise FeedRateLimited(f"{self.name}: rate limit reached: {text}", wait, "minute")
        if reply.status == 401:
            raise FeedRejected(f"{self.name}: key refused (HTTP 401): {text}")
        if reply.status == 403:
            return text or "not available with this plan"
        if reply.status >= 400:
            raise FeedUnavailable(f"{self.name}: HTTP {reply.status}: {text}")
        if not isinstance(body, dict) or "c" not in body:
            raise FeedUnavailable(f"{self.name}: unexpected quote body")
        return self._quote(symbol, body)

    def _quote(self, symbol: str, body: dict[str, Any]) -> Quote | str:
        price = dec(body.get("c"))
        stamp = body.get("t")
        if not price or not stamp:
            return f"{symbol}: finnhub has no data for this symbol (unknown, or not in the plan)"
        change, pct, prev = derive(
            price, dec(body.get("pc")), dec(body.get("d")), dec(body.get("dp"))
        )
        inst = BY_SYMBOL.get(symbol)
        return Quote(
            symbol=symbol,
            price=price,
            change=change,
            change_pct=pct,
            open=or_price(body.get("o"), price),
            high=or_price(body.get("h"), price),
            low=or_price(body.get("l"), price),
            prev_close=prev,
            volume=None,
            currency="USD",
            exchange=inst.exchange if inst is not None else "US",
            name=inst.name if inst is not None else symbol,
            source=self.name,
            source_time=int(stamp) * 1000 if isinstance(stamp, int | float) else 0,
            market_open=None,
        )
