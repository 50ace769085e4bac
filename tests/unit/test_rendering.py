"""The html wire format's fragments: quote rows and a rejected symbol's row, one partial."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from app.formats import HtmlFormat
from app.rendering import Renderer, age_text, exchange_time, next_open
from tests.unit.test_models import make_quote

CELLS = re.compile(r'data-col="([a-z]+)"')


def _attributes(row: str) -> dict[str, str]:
    opening = row[row.index("<tr") : row.index(">") + 1]
    return dict(re.findall(r'([a-z-]+)="([^"]*)"', opening))


def test_a_rejected_symbol_is_an_oob_row_replacing_its_quote_row() -> None:
    renderer = Renderer()
    fmt = HtmlFormat(renderer)
    quote_row = fmt.encode(make_quote(symbol="NIFTY 50")).decode()
    reason = "**symbol** or **figi** parameter is missing or invalid <b>"
    rejected = fmt.rejected("NIFTY 50", reason, "twelvedata,finnhub").decode()
    attributes = _attributes(rejected)
    # The same element as the symbol's quote row: swapped out of band, by id.
    assert attributes["id"] == _attributes(quote_row)["id"] == "q-NIFTY_2050"
    assert attributes["hx-swap-oob"] == "true"
    assert attributes["class"] == "quote rejected"
    assert attributes["data-symbol"] == "NIFTY 50"
    # Version (0, 0): any later quote of the symbol replaces it again.
    assert (attributes["data-epoch"], attributes["data-seq"]) == ("0", "0")
    assert attributes["data-price"] == ""
    # Every cell of a quote row, so the page merges it cell by cell like any row.
    assert CELLS.findall(rejected) == CELLS.findall(quote_row)
    assert '<span class="tag tag-rejected"' in rejected and ">Unknown symbol</span>" in rejected
    assert "not priced by twelvedata, finnhub" in rejected
    # The provider's words, escaped, for the tooltip.
    assert "invalid &lt;b&gt;" in rejected and "<b>" not in rejected
    # A page-rendered row (no oob) is the same row.
    in_page = renderer.rejected_row("NIFTY 50", reason, "twelvedata,finnhub", oob=False)
    assert in_page == rejected.replace(' hx-swap-oob="true"', "")


def test_a_rejection_without_a_source_names_the_feed() -> None:
    rejected = Renderer().rejected_row("NOPE", "unknown", None)
    assert "not priced by the feed" in rejected and 'data-source=""' in rejected


def test_each_quote_shows_its_exchanges_time_zone() -> None:
    # 15:00 UTC on 1 Dec 2026: 10:00 in New York for SPX (CBOE) as for AAPL, 20:30 in India.
    at = int(datetime(2026, 12, 1, 15, 0, tzinfo=UTC).timestamp() * 1000)
    shown = {
        exchange: exchange_time(make_quote(exchange=exchange, source_time=at)).clock
        for exchange in ("CBOE", "NASDAQ", "NYSE", "NSE", "BSE", "SIM")
    }
    assert shown == {
        "CBOE": "10:00:00 EST", "NASDAQ": "10:00:00 EST", "NYSE": "10:00:00 EST",
        "NSE": "20:30:00 IST", "BSE": "20:30:00 IST", "SIM": "15:00:00 UTC",
    }  # fmt: skip


def test_a_time_not_from_the_exchanges_today_shows_its_date() -> None:
    # 20:00 UTC on Friday 27 Nov: 01:30 on the 28th in India, 15:00 on the 27th in New York.
    at = int(datetime(2026, 11, 27, 20, 0, tzinfo=UTC).timestamp() * 1000)
    same_evening = datetime(2026, 11, 27, 22, 0, tzinfo=UTC)
    us = exchange_time(make_quote(exchange="NYSE", source_time=at), same_evening)
    assert (us.day, us.day_iso, us.zone, us.today) == (
        "27 Nov",
        "2026-11-27",
        "America/New_York",
        True,
    )
    india = exchange_time(make_quote(exchange="NSE", source_time=at), same_evening)
    assert (india.day_iso, india.today) == ("2026-11-28", True)  # already the 28th there
    monday = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
    assert not exchange_time(make_quote(exchange="NYSE", source_time=at), monday).today
    row = Renderer().quote_row(make_quote(exchange="NYSE", source_time=at))
    assert '<span class="day">27 Nov </span>15:00:00 EST' in row  # not today: the date shows
    assert 'data-day="2026-11-27" data-zone="America/New_York"' in row


def test_ages_read_as_people_say_them() -> None:
    assert [age_text(s) for s in (0, 59, 60, 3599, 3 * 3600, 47 * 3600, 59143948)] == [
        "0 s", "59 s", "1 min", "59 min", "3 h", "47 h", "684 d",
    ]  # fmt: skip


def test_a_closed_market_names_its_next_open() -> None:
    friday_evening = datetime(2026, 12, 4, 17, 0, tzinfo=UTC)
    assert next_open(make_quote(exchange="NSE"), friday_evening) == "Mon 09:15 IST"
    assert next_open(make_quote(exchange="NASDAQ"), friday_evening) == "Mon 09:30 EST"
    # Christmas Day, then the weekend: NSE opens on Monday the 28th.
    assert next_open(make_quote(exchange="NSE"), datetime(2026, 12, 24, 12, tzinfo=UTC)) == (
        "Mon 09:15 IST"
    )
    assert next_open(make_quote(exchange="SIM"), friday_evening) is None
