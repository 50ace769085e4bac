"""Alpha Vantage: `GET /query?function=GLOBAL_QUOTE&symbol=X`, one call per symbol.

Shapes (providers.md section 2): every answer is HTTP 200, errors included. `Error Message` is a
hard error (bad key, or a bad call for this symbol); `Note` / `Information` without data is a
throttle or notice, classified by its text (per minute, per day, premium, key); an unknown symbol
is `{"Global Quote": {}}`. Values are strings, the percent carries a `%`, and the only time is the
latest trading *day*, stamped at that day's close in the exchange's zone. A free key gets
end-of-day prices and 25 calls a day: a last-resort provider, never polled fast.

Symbol syntax: `IBM` (US), `RELIANCE.BSE` or `RELIANCE:BSE` (BSE; NSE was dropped in 2020).
The universe's NSE equities (`RELIANCE`, `TCS`, ...) are listed on BSE too under the same code, so
they are asked for as `RELIANCE.BSE`: the quote keeps the symbol a trader asked for and says
exchange `BSE`, where its price is from. Explicit NSE symbols (`TCS:NSE`) and indices are refused.
Every price is end of day (GLOBAL_QUOTE on a free key, no `entitlement`): the source is listed in
`app.feeds.base.END_OF_DAY_SOURCES`, so the pages label its prices "End of day".
The key can only travel in the query string: `app.feeds.http` masks it in httpx's logs.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import httpx

from app import sessions
from app.feeds.base import FeedRateLimited, FeedRejected, FeedUnavailable, FetchResult
from app.feeds.http import clean_message, dec, derive, fetch_each, get_json, or_price, volume_of
from app.feeds.universe import BY_SYMBOL
from app.models import Quote


def provider_symbol(symbol: str) -> str:
    """Alpha Vantage's code: `X:BSE` -> `X.BSE`; a universe NSE equity -> its BSE listing."""
    inst = BY_SYMBOL.get(symbol)
    if inst is not None and inst.exchange == "NSE" and inst.daily_volume:
        return f"{symbol}.BSE"
    return symbol.replace(":BSE", ".BSE")


class AlphaVantageFeed:
    name = "alphavantage"

    def __init__(
        self,
        client: httpx.AsyncClient,
        api_key: str,
        base_url: str = "https://www.alphavantage.co/query",
        timeout: float = 5.0,
    ) -> None:
        self._client = client
        self._key = api_key
        self._url = base_url
        self._timeout = timeout

    def check_symbol(self, symbol: str) -> str | None:
        inst = BY_SYMBOL.get(symbol)
        if inst is not None and not inst.daily_volume:
            return f"{symbol}: alphavantage does not quote indices"
        if symbol.endswith((":NSE", ".NSE")):
            return f"{symbol}: alphavantage has no NSE data (use SYMBOL:BSE)"
        return None

    async def fetch(self, symbols: Sequence[str]) -> FetchResult:
        return await fetch_each(self.name, symbols, self._one, concurrent=False)

    async def _one(self, symbol: str) -> Quote | str:
        reply = await get_json(
            self._client,
            self.name,
            self._url,
            params={"function": "GLOBAL_QUOTE", "symbol": provider_symbol(symbol),
                    "apikey": self._key},
            timeout=self._timeout,
        )  # fmt: skip
        body = reply.body
        if reply.status >= 400 or not isinstance(body, dict):
            raise FeedUnavailable(f"{self.name}: unexpected answer (HTTP {reply.status})")
        data = body.get("Global Quote")
        if isinstance(data, dict) and data:
            return self._quote(symbol, data)
        if "Error Message" in body:
            text = clean_message(body["Error Message"], self._key)
            if "apikey" in text.lower():
                raise FeedRejected(f"{self.name}: key refused: {text}")
            return text
        notice = body.get("Information", body.get("Note"))
        if notice is not None:
            raise self._notice(clean_message(notice, self._key))
        if isinstance(data, dict):
            return f"{symbol}: alphavantage has no quote for this symbol"
        raise FeedUnavailable(f"{self.name}: unexpected answer without a quote")

    def _notice(self, text: str) -> Exception:
        lower = text.lower()
        if "apikey" in lower or "api key is invalid" in lower or "demo" in lower:
            return FeedRejected(f"{self.name}: key refused: {text}")
        if "is a premium endpoint" in lower:
            return FeedRejected(f"{self.name}: needs a premium plan: {text}")
        if "per minute" in lower or "sparingly" in lower:
            return FeedRateLimited(f"{self.name}: too many calls: {text}", 60.0, "minute")
        if "per day" in lower or "rate limit" in lower:
            return FeedRateLimited(f"{self.name}: daily limit reached: {text}", 0.0, "day")
        return FeedUnavailable(f"{self.name}: notice instead of data: {text}")

    def _quote(self, symbol: str, data: dict[str, Any]) -> Quote | str:
        price = dec(data.get("05. price"))
        if price is None:
            return f"{symbol}: alphavantage returned no price"
        change, pct, prev = derive(
            price, dec(data.get("08. previous close")), dec(data.get("09. change")),
            dec(data.get("10. change percent")),
        )  # fmt: skip
        exchange = "BSE" if provider_symbol(symbol).endswith(".BSE") else "US"
        inst = BY_SYMBOL.get(symbol)
        return Quote(
            symbol=symbol,
            price=price,
            change=change,
            change_pct=pct,
            open=or_price(data.get("02. open"), price),
            high=or_price(data.get("03. high"), price),
            low=or_price(data.get("04. low"), price),
            prev_close=prev,
            volume=volume_of(data.get("06. volume")),
            currency="INR" if exchange == "BSE" else "USD",
            exchange=inst.exchange if inst is not None and exchange == "US" else exchange,
            name=inst.name if inst is not None else symbol,
            source=self.name,
            source_time=_close_ms(data.get("07. latest trading day"), exchange),
            market_open=None,
        )


def _close_ms(day: object, exchange: str) -> int:
    """The trading day's close in the exchange's zone: GLOBAL_QUOTE carries only the date."""
    try:
        parsed = date.fromisoformat(str(day))
    except ValueError:
        return 0
    hours = sessions.MARKETS[exchange]  # its regular close, in its zone
    return int(datetime.combine(parsed, hours.closes, hours.zone).timestamp() * 1000)
