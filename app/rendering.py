"""HTML rendering: the Jinja environment, number formatting, quote rows and the status badge.

The `_quote_row.html` partial is the single source of a quote's HTML: the page renders it in place,
and the `html` wire format renders the very same partial with `hx-swap-oob` for WebSocket frames,
so what htmx swaps in is byte-for-byte what a reload would show. That includes a symbol's rejected
state (the provider cannot price it): the `html` format's `rejected` message is that symbol's row
saying "Unknown symbol", not priced by the provider, and pages render the same row for symbols
known to be rejected.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import jinja2

from app import resources, sessions
from app.feeds.base import END_OF_DAY_SOURCES
from app.models import FeedStatus, Quote, Refusal
from app.symbols import dom_id

TEMPLATES_DIR = resources.directory("templates")
STATIC_DIR = resources.directory("static")

_CURRENCY_SIGNS = {"INR": "₹", "USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}


def price(value: Decimal | None, currency: str = "") -> str:
    if value is None:
        return "—"
    return f"{_CURRENCY_SIGNS.get(currency, '')}{value:,.2f}"


def signed(value: Decimal | None) -> str:
    if value is None:
        return "—"
    return f"{value:+,.2f}".replace("-", "−")


def percent(value: Decimal | None) -> str:
    if value is None:
        return "—"
    return f"{value:+.2f}%".replace("-", "−")


def volume(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def direction(quote: Quote | None) -> str:
    if quote is None or quote.change == 0:
        return "flat"
    return "up" if quote.change > 0 else "down"


def market_state(quote: Quote) -> str:
    """`open`, `closed` or `unknown`, from the source's market-open flag."""
    if quote.market_open is None:
        return "unknown"
    return "open" if quote.market_open else "closed"


def end_of_day(quote: Quote) -> bool:
    """The price is a trading day's close from an end-of-day source, not a live price."""
    return quote.source in END_OF_DAY_SOURCES


# Sources whose prices are not market data: every page that shows one says so (notice, badge, tag).
# Keyed by the quote's `source`, the feed's name as the server knows it, never a page setting.
UNREAL_SOURCES = {"simulated": "simulated", "replay": "replayed"}
UNREAL_NOTICES = {
    "simulated": "Simulated prices: not market data",
    "replayed": "Replayed prices: recorded, not live market data",
}
# A compact tag per source for rows where the Source column has no room (boards, movers, mobile).
_SOURCE_TAGS = {
    "simulated": ("SIM", "Simulated: not market data"),
    "replay": ("REPLAY", "Replayed: recorded prices, not live market data"),
    "twelvedata": ("TD", "Twelve Data"),
    "finnhub": ("FH", "Finnhub"),
    "alphavantage": ("AV", "Alpha Vantage (end of day)"),
    "nse": ("NSE", "NSE India website (unofficial)"),
}


def unreal(source: str) -> str:
    """`simulated` or `replayed` when a source's prices are not market data, else ""."""
    return UNREAL_SOURCES.get(source, "")


def unreal_notice(quotes: Iterable[Quote | None]) -> str:
    """The page's notice when any price it shows is simulated or replayed, else ""."""
    kinds = {unreal(q.source) for q in quotes if q is not None} - {""}
    return " · ".join(UNREAL_NOTICES[k] for k in sorted(kinds, reverse=True))


def source_tag(source: str) -> tuple[str, str]:
    """(abbreviation, full name for its tooltip) of a quote's source."""
    return _SOURCE_TAGS.get(source, (source.upper()[:6], source))


def age_text(seconds: float) -> str:
    """ "45 s", "12 min", "3 h", "2 d" (static/js/age.js ageText): never a raw count of seconds."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    return f"{s // 3600} h" if s < 48 * 3600 else f"{s // 86400} d"


@dataclass(frozen=True, slots=True)
class ExchangeTime:
    """A quote's source time for people: in its exchange's zone, with the date when that is not
    the exchange's today (`today` at render time; the page script keeps `day` hidden or not as
    days pass, from `day_iso` and `zone`)."""

    iso: str  # ISO 8601 UTC, for `datetime=`
    clock: str  # "15:30:00 IST"
    day: str  # "28 Nov"
    day_iso: str  # "2026-11-28", in the exchange's zone
    zone: str  # IANA name ("Asia/Kolkata"), "UTC" when the exchange is unknown
    today: bool


def exchange_time(quote: Quote, now: datetime | None = None) -> ExchangeTime:
    moment = datetime.fromtimestamp(quote.source_time / 1000, UTC)
    zone = sessions.zone(quote.exchange)
    local = moment.astimezone(zone) if zone else moment
    today = (now or datetime.now(UTC)).astimezone(local.tzinfo).date() == local.date()
    return ExchangeTime(
        moment.isoformat(timespec="seconds"), local.strftime("%H:%M:%S %Z"),
        f"{local.day} {local:%b}", local.date().isoformat(), zone.key if zone else "UTC", today,
    )  # fmt: skip


def next_open(quote: Quote, now: datetime | None = None) -> str | None:
    """When a closed market opens next, in its zone ("Mon 09:15 IST"), for the Closed tag; None
    when the exchange has no calendar."""
    # To the minute, and cached: a page of 50 closed rows asks 50 times within one minute.
    return _next_open(quote.exchange, (now or datetime.now(UTC)).replace(second=0, microsecond=0))


@functools.lru_cache(maxsize=256)
def _next_open(exchange: str, at: datetime) -> str | None:
    opens = sessions.next_open(exchange, at)
    if opens is None:
        return None
    if (opens - at).days >= 6:  # a week or more away: the date says more than the weekday
        return opens.strftime("%a %d %b %H:%M %Z")
    return opens.strftime("%a %H:%M %Z")


def make_environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        # Templates ship with the code: no stat() of the file on every include of a row.
        auto_reload=False,
    )
    env.filters.update(price=price, signed=signed, percent=percent, volume=volume)
    env.globals.update(
        dom_id=dom_id,
        direction=direction,
        exchange_time=exchange_time,
        market_state=market_state,
        next_open=next_open,
        end_of_day=end_of_day,
        unreal=unreal,
        unreal_notices=UNREAL_NOTICES,
        source_tag=source_tag,
    )
    return env


class Renderer:
    """Renders quote fragments; the same environment serves the pages."""

    def __init__(self, env: jinja2.Environment | None = None) -> None:
        self.env = env or make_environment()
        self._row = self.env.get_template("_quote_row.html")
        self._status = self.env.get_template("_status.html")

    def quote_row(self, quote: Quote, *, oob: bool = True) -> str:
        return self._row.render(symbol=quote.symbol, q=quote, oob=oob)

    def rejected_row(
        self, symbol: str, reason: str, source: str | None, *, oob: bool = True
    ) -> str:
        """The symbol's row in its rejected state: "Unknown symbol", not priced by `source`.

        Same id and cells as its quote row, so it replaces the row a page shows (pending or
        priced); its version is (0, 0), so any later quote of the symbol replaces it in turn."""
        refusals = {symbol: Refusal(reason, source)}
        return self._row.render(symbol=symbol, q=None, oob=oob, refusals=refusals)

    def status(self, status: FeedStatus) -> str:
        return self._status.render(state=status.state, reason=_why(status), oob=True)


def _why(status: FeedStatus) -> str | None:
    """The badge's tooltip: the reason, and the detail that names the provider."""
    if status.detail:
        return f"{status.reason}: {status.detail}" if status.reason else status.detail
    return status.reason
