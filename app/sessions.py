"""Exchange sessions: is a market open at a moment, when it next opens and closes, its time zone.

The one owner of trading hours. Holidays come from the `holidays` package's financial calendars
(`XNSE` for NSE, `XBOM` for BSE, `XNYS` for the US exchanges, NASDAQ's holidays being NYSE's),
which compute each year's dates by rule (India's lunar holidays are marked "estimated" for years
the exchange has not published yet). Hours are the regular sessions, which have not changed in
years: NSE and BSE 09:15-15:30 IST (pre-open and the Diwali evening session are not counted),
US 09:30-16:00 ET, closing at 13:00 on the three usual half days. An index keeps its exchange's
hours and zone: SPX (CBOE) trades and is stamped in New York time, like US stocks.

Every function takes the moment to judge (an aware `datetime`): callers inject their clock, so
tests never depend on today's date. An exchange without a calendar (`SIM`, an unknown code)
answers None: open or closed is unknown.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import holidays

# How far ahead to look for the next session: longer than any real run of closed days.
_HORIZON_DAYS = 20


@dataclass(frozen=True, slots=True)
class Market:
    """A calendar (the `holidays` package's code), the exchange's zone and its regular hours."""

    calendar: str
    zone: ZoneInfo
    opens: time
    closes: time
    # The US half days (day after Thanksgiving, Christmas Eve, the eve of Independence Day).
    early_close: time | None = None


_IST = ZoneInfo("Asia/Kolkata")
_ET = ZoneInfo("America/New_York")
_NSE = Market("XNSE", _IST, time(9, 15), time(15, 30))
_BSE = Market("XBOM", _IST, time(9, 15), time(15, 30))
_US = Market("XNYS", _ET, time(9, 30), time(16, 0), early_close=time(13, 0))

# Exchange codes as quotes carry them; `US` is what an adapter says when it knows no more.
MARKETS: dict[str, Market] = {
    "NSE": _NSE,
    "BSE": _BSE,
    "NASDAQ": _US,
    "NYSE": _US,
    "CBOE": _US,
    "US": _US,
}


# One-off closures (elections, a special holiday) that the exchanges announce at short notice and
# the rule-based calendars miss; checked against exchange-calendars' XBOM list for 2024-2026.
_INDIA_CLOSURES = {
    date(2024, 1, 22): "Special holiday",
    date(2024, 5, 20): "General election (Mumbai)",
    date(2024, 11, 20): "Maharashtra assembly election",
    date(2026, 1, 15): "Municipal corporation election (Maharashtra)",
}
_EXTRA_CLOSURES = {"XNSE": _INDIA_CLOSURES, "XBOM": _INDIA_CLOSURES}


@dataclass(frozen=True, slots=True)
class Session:
    """One trading day's session, as aware datetimes in the exchange's zone."""

    opens: datetime
    closes: datetime


def market(exchange: str) -> Market | None:
    return MARKETS.get(exchange)


def zone(exchange: str) -> ZoneInfo | None:
    """The exchange's IANA time zone (quotes are shown in it), or None when unknown."""
    found = MARKETS.get(exchange)
    return found.zone if found is not None else None


@cache
def _holidays(calendar: str) -> holidays.HolidayBase:
    # Years are computed on first use of a date in them, then kept.
    return holidays.financial_holidays(calendar)


def holiday(exchange: str, day: date) -> str | None:
    """The holiday's name when the exchange is shut for one on `day` (weekends not included)."""
    found = MARKETS.get(exchange)
    if found is None:
        return None
    name: str | None = _holidays(found.calendar).get(day)
    return name or _EXTRA_CLOSURES.get(found.calendar, {}).get(day)


def session(exchange: str, day: date) -> Session | None:
    """The exchange's session on `day` (a date in its own zone), or None: weekend, holiday, or
    no calendar for this exchange."""
    found = MARKETS.get(exchange)
    if found is None or day.weekday() >= 5 or holiday(exchange, day) is not None:
        return None
    closes = found.closes
    if found.early_close is not None and _us_half_day(found, day):
        closes = found.early_close
    return Session(
        datetime.combine(day, found.opens, found.zone),
        datetime.combine(day, closes, found.zone),
    )


def is_open(exchange: str, at: datetime) -> bool | None:
    """True during a regular session, False outside one, None when the exchange has no calendar."""
    found = MARKETS.get(exchange)
    if found is None:
        return None
    today = session(exchange, at.astimezone(found.zone).date())
    return today is not None and today.opens <= at < today.closes


def next_open(exchange: str, at: datetime) -> datetime | None:
    """The start of the first session that begins after `at` (while a session runs: the next
    one's), or None without a calendar."""
    for candidate in _sessions_from(exchange, at):
        if candidate.opens > at:
            return candidate.opens
    return None


def next_close(exchange: str, at: datetime) -> datetime | None:
    """The end of the session running at `at`, else of the next one; None without a calendar."""
    for candidate in _sessions_from(exchange, at):
        if candidate.closes > at:
            return candidate.closes
    return None


def _sessions_from(exchange: str, at: datetime) -> Iterator[Session]:
    """The sessions from `at`'s day on, looked up one day at a time (callers stop at the first
    that suits them)."""
    found = MARKETS.get(exchange)
    if found is None:
        return
    first = at.astimezone(found.zone).date()
    for n in range(_HORIZON_DAYS):
        if (s := session(exchange, first + timedelta(days=n))) is not None:
            yield s


def _us_half_day(found: Market, day: date) -> bool:
    """NYSE closes at 13:00 the day after Thanksgiving, on Christmas Eve and on July 3 when they
    are trading days (July 3 only when July 4 falls on a weekday after it)."""
    if day.month == 11 and day.weekday() == 4:
        return (day - timedelta(days=1)) in _holidays(found.calendar) and 22 <= day.day - 1 <= 28
    if day.month == 12 and day.day == 24:
        return True
    return day.month == 7 and day.day == 3 and day.weekday() <= 3
