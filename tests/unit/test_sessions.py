"""Exchange sessions from the calendar: hours, weekends, holidays, half days, zones. Every moment
is given explicitly, so nothing depends on today's date."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from app import sessions

IST = ZoneInfo("Asia/Kolkata")
ET = ZoneInfo("America/New_York")


@pytest.mark.parametrize(
    ("exchange", "moment", "expected"),
    [
        # The examples: 04:17 IST and 17:53 EST are outside any session.
        ("NSE", datetime(2026, 12, 1, 4, 17, tzinfo=IST), False),
        ("NASDAQ", datetime(2026, 12, 1, 17, 53, tzinfo=ET), False),
        ("NSE", datetime(2026, 12, 1, 9, 15, tzinfo=IST), True),
        ("NSE", datetime(2026, 12, 1, 15, 29, 59, tzinfo=IST), True),
        ("NSE", datetime(2026, 12, 1, 15, 30, tzinfo=IST), False),
        ("NSE", datetime(2026, 12, 1, 9, 5, tzinfo=IST), False),  # pre-open is not trading
        ("BSE", datetime(2026, 12, 1, 11, 0, tzinfo=IST), True),
        ("NYSE", datetime(2026, 12, 1, 9, 30, tzinfo=ET), True),
        ("CBOE", datetime(2026, 12, 1, 15, 59, tzinfo=ET), True),
        ("NASDAQ", datetime(2026, 12, 5, 11, 0, tzinfo=ET), False),  # a Saturday
        ("NSE", datetime(2026, 12, 6, 11, 0, tzinfo=IST), False),  # a Sunday
        ("NSE", datetime(2026, 12, 25, 11, 0, tzinfo=IST), False),  # Christmas
        ("NSE", datetime(2026, 11, 24, 11, 0, tzinfo=IST), False),  # Guru Nanak Jayanti
        ("NSE", datetime(2026, 1, 15, 11, 0, tzinfo=IST), False),  # election closure
        ("NYSE", datetime(2026, 11, 26, 11, 0, tzinfo=ET), False),  # Thanksgiving
        ("NYSE", datetime(2026, 11, 27, 12, 59, tzinfo=ET), True),  # half day
        ("NYSE", datetime(2026, 11, 27, 13, 0, tzinfo=ET), False),
        ("NYSE", datetime(2026, 12, 24, 13, 30, tzinfo=ET), False),  # Christmas Eve, half day
        ("NYSE", datetime(2026, 7, 3, 11, 0, tzinfo=ET), False),  # July 4th observed
        ("NYSE", datetime(2025, 7, 3, 12, 0, tzinfo=ET), True),
        ("NYSE", datetime(2025, 7, 3, 14, 0, tzinfo=ET), False),  # eve of the 4th, half day
    ],
)
def test_is_open(exchange: str, moment: datetime, expected: bool) -> None:
    assert sessions.is_open(exchange, moment) is expected
    # The same instant in another zone gives the same answer.
    assert sessions.is_open(exchange, moment.astimezone(UTC)) is expected


def test_exchanges_without_a_calendar_are_unknown() -> None:
    at = datetime(2026, 12, 1, 12, tzinfo=UTC)
    assert sessions.is_open("SIM", at) is None
    assert sessions.next_open("SIM", at) is None
    assert sessions.next_close("SIM", at) is None
    assert sessions.zone("SIM") is None


def test_next_open_skips_weekends_and_holidays() -> None:
    # Friday 25 Dec 2026 is Christmas; the weekend follows: NSE opens again on Monday the 28th.
    after = datetime(2026, 12, 24, 16, 0, tzinfo=IST)
    assert sessions.next_open("NSE", after) == datetime(2026, 12, 28, 9, 15, tzinfo=IST)
    assert sessions.next_close("NSE", after) == datetime(2026, 12, 28, 15, 30, tzinfo=IST)
    # During a session: it closes today, and the next open is tomorrow's.
    during = datetime(2026, 12, 1, 10, 0, tzinfo=ET)
    assert sessions.next_close("NASDAQ", during) == datetime(2026, 12, 1, 16, 0, tzinfo=ET)
    assert sessions.next_open("NASDAQ", during) == datetime(2026, 12, 2, 9, 30, tzinfo=ET)
    # Before the open on a trading day: today's open.
    early = datetime(2026, 12, 1, 4, 17, tzinfo=IST)
    assert sessions.next_open("NSE", early) == datetime(2026, 12, 1, 9, 15, tzinfo=IST)


def test_calendar_goes_on_past_the_current_year() -> None:
    # Rule-based: next year's holidays exist before the exchange publishes them.
    assert sessions.holiday("NYSE", date(2027, 1, 1)) is not None
    assert sessions.holiday("NSE", date(2027, 1, 26)) is not None
    assert sessions.next_open("NSE", datetime(2027, 1, 25, 16, tzinfo=IST)) == datetime(
        2027, 1, 27, 9, 15, tzinfo=IST
    )


def test_each_exchange_has_its_own_zone() -> None:
    # SPX is computed in New York hours, like the US stocks: never Chicago time.
    assert sessions.zone("CBOE") == ET
    assert sessions.zone("NASDAQ") == sessions.zone("NYSE") == ET
    assert sessions.zone("NSE") == sessions.zone("BSE") == IST
