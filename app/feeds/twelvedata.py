"""Twelve Data: one batch `GET /quote?symbol=A,B:NSE` per poll, for US and Indian symbols.

Shapes (providers.md section 1): a batch answers a map keyed by symbol whose values are quotes or
per-symbol error objects; a batch of one answers the flat quote; a batch-wide failure (credits
gone) answers one flat error object. Error bodies `{"code", "message", "status": "error"}` come
under HTTP 200 *or* a real 4xx/429, so the body is authoritative. Minute and daily credit limits
differ only in their text ("for the current minute" / "for the day").

Symbol syntax: `AAPL`, `RELIANCE:NSE`; an Indian symbol of the reference universe given without
an exchange (`RELIANCE`) is asked for as `RELIANCE:NSE`. Quotes keep the symbol the client used.
The key travels in the `Authorization: apikey <key>` header, never in the URL.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from app.feeds.base import FeedRateLimited, FeedRejected, FeedUnavailable, FetchResult
from app.feeds.http import clean_message, dec, derive, get_json, or_price, volume_of
from app.feeds.universe import BY_SYMBOL
from app.models import Quote

log = logging.getLogger(__name__)

# Per-symbol error codes that mean "this symbol, not the whole request".
_SYMBOL_CODES = {400, 403, 404}


def provider_symbol(symbol: str) -> str:
    inst = BY_SYMBOL.get(symbol)
    if inst is not None and inst.exchange in ("NSE", "BSE") and ":" not in symbol:
        return f"{symbol}:{inst.exchange}"
    return symbol


def _is_error(obj: object) -> bool:
    return isinstance(obj, dict) and obj.get("status") == "error"


class TwelveDataFeed:
    name = "twelvedata"

    def __init__(
        self,
        client: httpx.AsyncClient,
        api_key: str,
        base_url: str = "https://api.twelvedata.com",
        timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._key = api_key
        self._url = base_url.rstrip("/") + "/quote"
        self._timeout = timeout
        self._clock = clock

    def check_symbol(self, symbol: str) -> str | None:
        return None  # only the provider knows its ~100k symbols; unknown ones come back rejected

    async def fetch(self, symbols: Sequence[str]) -> FetchResult:
        # Several client spellings may name one instrument (RELIANCE, RELIANCE:NSE): ask once,
        # answer each.
        wanted: dict[str, list[str]] = {}
        for s in symbols:
            wanted.setdefault(provider_symbol(s), []).append(s)
        reply = await get_json(
            self._client,
            self.name,
            self._url,
            params={"symbol": ",".join(wanted)},
            headers={"Authorization": f"apikey {self._key}"},
            timeout=self._timeout,
        )
        body = reply.body
        if not isinstance(body, dict):
            raise FeedUnavailable(f"{self.name}: unexpected body (not an object)")
        if _is_error(body):
            if len(wanted) == 1 and body.get("code") in _SYMBOL_CODES:
                return FetchResult(rejected=dict.fromkeys(symbols, self._message(body)))
            raise self._error(body, reply.status)
        if reply.status >= 400:
            raise self._error({"code": reply.status}, reply.status)
        left = reply.headers.get("api-credits-left", "")
        result = FetchResult(credits_left=int(left) if left.isdigit() else None)
        if "symbol" in body and len(wanted) == 1:  # a batch of one comes back flat
            for symbol in symbols:
                self._take(result, symbol, body)
            return result
        by_inner = {
            str(v.get("symbol", "")).upper(): v
            for v in body.values()
            if isinstance(v, dict) and not _is_error(v)
        }
        for asked, names in wanted.items():
            item = body.get(asked, body.get(asked.split(":")[0]))
            if item is None:
                item = by_inner.get(asked.split(":")[0])
            if item is None:
                log.warning("%s: no entry for %s in the batch answer", self.name, asked)
                continue
            for symbol in names:
                self._take(result, symbol, item)
        return result

    def _take(self, result: FetchResult, symbol: str, item: object) -> None:
        if _is_error(item):
            assert isinstance(item, dict)
            if item.get("code") == 429:
                raise self._error(item, 200)  # one symbol out of credits: the batch is too
            result.rejected[symbol] = self._message(item)
            return
        if not isinstance(item, dict):
            log.warning("%s: entry for %s is not an object", self.name, symbol)
            return
        quote = self._quote(symbol, item)
        if quote is None:
            log.warning("%s: no price for %s in its answer", self.name, symbol)
        else:
            result.quotes.append(quote)

    def _quote(self, symbol: str, item: dict[str, Any]) -> Quote | None:
        price = dec(item.get("close"))
        if price is None:
            return None
        change, pct, prev = derive(
            price, dec(item.get("previous_close")), dec(item.get("change")),
            dec(item.get("percent_change")),
        )  # fmt: skip
        stamp = item.get("last_quote_at") or item.get("timestamp")
        source_ms = (
            int(stamp) * 1000
            if isinstance(stamp, int) and not isinstance(stamp, bool) and stamp > 0
            else int(self._clock() * 1000)
        )
        market_open = item.get("is_market_open")
        return Quote(
            symbol=symbol,
            price=price,
            change=change,
            change_pct=pct,
            open=or_price(item.get("open"), price),
            high=or_price(item.get("high"), price),
            low=or_price(item.get("low"), price),
            prev_close=prev,
            volume=volume_of(item.get("volume")),
            currency=str(item.get("currency") or ""),
            exchange=str(item.get("exchange") or ""),
            name=str(item.get("name") or symbol),
            source=self.name,
            source_time=source_ms,
            market_open=market_open if isinstance(market_open, bool) else None,
        )

    def _message(self, body: dict[str, Any]) -> str:
        return clean_message(body.get("message") or f"error {body.get('code')}", self._key)

    def _error(self, body: dict[str, Any], status: int) -> Exception:
        code = body.get("code") if isinstance(body.get("code"), int) else status
        text = self._message(body)
        if code == 429 or "API credits" in text:
            if "for the day" in text:
                return FeedRateLimited(f"{self.name}: daily credits used up", 0.0, "day")
            return FeedRateLimited(f"{self.name}: minute credits used up", 0.0, "minute")
        if code in (401, 403):
            return FeedRejected(f"{self.name}: refused (HTTP {code}): {text}")
        return FeedUnavailable(f"{self.name}: error {code}: {text}")
