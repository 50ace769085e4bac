"""What every HTTP adapter shares: one guarded GET, number parsing, and keeping keys out of logs.

`get_json` turns every transport-level surprise into `FeedUnavailable` with a message of our own
(never httpx's, which quotes the URL): timeouts, refused connections, 5xx, HTML block pages,
truncated or non-JSON bodies. What a JSON body *means* (a quota error under HTTP 200, say) is the
adapter's business.

httpx logs each request's full URL at INFO on the `httpx` logger; Alpha Vantage only accepts its key
in the query string, so `install_redaction` puts a filter on that logger which masks `apikey=`,
`token=` and every configured key before the record reaches any handler.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
import orjson

from app.feeds.base import FeedError, FeedRateLimited, FeedRejected, FeedUnavailable, FetchResult
from app.models import Quote

log = logging.getLogger(__name__)

_QUERY_SECRET = re.compile(r"((?:apikey|api_key|token)=)[^&\s\"']+", re.IGNORECASE)


class _Redact(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def scrub(self, text: str) -> str:
        text = _QUERY_SECRET.sub(r"\1***", text)
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self.scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def install_redaction(secrets: Iterable[str]) -> None:
    """Mask API keys in records of the HTTP client loggers (idempotent per logger)."""
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, _Redact)]:
            logger.removeFilter(old)
        logger.addFilter(_Redact(secrets))


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: Any
    headers: httpx.Headers


async def get_json(
    client: httpx.AsyncClient,
    provider: str,
    url: str,
    *,
    params: Mapping[str, str],
    headers: Mapping[str, str] | None = None,
    timeout: float,  # noqa: ASYNC109 (httpx's own per-request timeout, not asyncio's)
) -> Reply:
    """GET and decode JSON; transport failures, 5xx and non-JSON bodies raise `FeedUnavailable`."""
    try:
        response = await client.get(url, params=params, headers=headers, timeout=timeout)
    except httpx.TimeoutException:
        raise FeedUnavailable(f"{provider}: no answer within {timeout:g}s") from None
    except httpx.HTTPError as exc:
        raise FeedUnavailable(f"{provider}: request failed ({type(exc).__name__})") from None
    kind = response.headers.get("content-type", "")
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        what = (
            "an HTML page" if "html" in kind or response.content[:1] == b"<" else "a non-JSON body"
        )
        raise FeedUnavailable(
            f"{provider}: answered HTTP {response.status_code} with {what}"
        ) from None
    if response.status_code >= 500:
        raise FeedUnavailable(f"{provider}: server error HTTP {response.status_code}")
    return Reply(response.status_code, body, response.headers)


def dec(value: object) -> Decimal | None:
    """A provider's number (string or JSON number) as a Decimal; None if absent or not a number."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float):
        value = repr(value)
    if isinstance(value, str):
        value = value.strip().rstrip("%").replace(",", "")
        if not value:
            return None
    if not isinstance(value, str | int):
        return None
    try:
        result = Decimal(value)
    except InvalidOperation:
        return None
    return result if result.is_finite() else None


def derive(
    price: Decimal, prev_close: Decimal | None, change: Decimal | None, pct: Decimal | None
) -> tuple[Decimal, Decimal, Decimal]:
    """(change, change %, previous close), computing what the provider left out."""
    if prev_close is None:
        prev_close = price - change if change is not None else price
    if change is None:
        change = price - prev_close
    if pct is None:
        pct = (change / prev_close * 100).quantize(Decimal("0.0001")) if prev_close else Decimal(0)
    return change, pct, prev_close


def or_price(value: object, price: Decimal) -> Decimal:
    """A day open/high/low, or the price itself when the provider has none (null, missing)."""
    number = dec(value)
    return price if number is None else number


def volume_of(value: object) -> int | None:
    number = dec(value)
    return int(number) if number is not None else None


async def fetch_each(
    provider: str,
    symbols: Sequence[str],
    one: Callable[[str], Awaitable[Quote | str]],
    *,
    concurrent: bool,
) -> FetchResult:
    """Providers without a batch call: one request per symbol.

    `one` returns a Quote, or a string: the provider's reason for rejecting that symbol. With
    `concurrent` the requests overlap, so a hanging provider costs one timeout per poll, not one
    per symbol. A provider-wide error (quota, key) is raised; a failure of some symbols does not
    fail the others, but if every symbol failed the first failure is raised.
    """

    async def attempt(symbol: str) -> Quote | str | FeedError:
        try:
            return await one(symbol)
        except FeedError as exc:
            return exc

    if concurrent:
        outcomes = list(await asyncio.gather(*(attempt(s) for s in symbols)))
    else:
        outcomes = []
        for symbol in symbols:
            outcomes.append(await attempt(symbol))
            if isinstance(outcomes[-1], FeedRateLimited | FeedRejected):
                break  # provider-wide: asking for the next symbol would be refused too
    result = FetchResult()
    failures: list[FeedError] = []
    for symbol, outcome in zip(symbols, outcomes, strict=False):
        if isinstance(outcome, FeedRateLimited | FeedRejected):
            raise outcome  # the guard must see it (quota pause, breaker)
        if isinstance(outcome, FeedError):
            log.warning("%s: %s failed: %s", provider, symbol, outcome)
            failures.append(outcome)
        elif isinstance(outcome, str):
            result.rejected[symbol] = outcome
        else:
            result.quotes.append(outcome)
    if failures and not result.quotes and not result.rejected:
        raise failures[0]
    return result


def clean_message(text: object, secret: str, limit: int = 300) -> str:
    """A provider's error text, safe to log and show: the key masked, length bounded."""
    message = str(text) if text is not None else ""
    if secret:
        message = message.replace(secret, "***")
    return _QUERY_SECRET.sub(r"\1***", message)[:limit]
