"""Simulated prices say so in the server's HTML, from the quotes' own source (issue 13, point 3),
and every row carries its source as a compact tag (point 2)."""

from __future__ import annotations

import re

from app.rendering import Renderer, unreal_notice
from tests.fast.inprocess import wait_priced
from tests.support import ROOT
from tests.unit.asgi import TestClient, app_client
from tests.unit.test_models import make_quote

NOTICE = re.compile(r'<p id="unreal-notice"[^>]*>')


def notice(html: str) -> tuple[bool, str]:
    """(shown, text) of the page's not-market-data notice."""
    opening = NOTICE.search(html)
    assert opening, "no notice element"
    text = html[opening.end() : html.index("</p>", opening.end())]
    return " hidden" not in opening.group(0), re.sub(r"<[^>]+>", "", text).strip()


def test_every_page_of_simulated_prices_shows_the_notice(client: TestClient) -> None:
    wait_priced(client, "TCS", "RELIANCE", "AAPL")
    for path in ("/", "/market", "/stock/TCS"):
        html = client.get(path).text
        shown, text = notice(html)
        assert shown and text == "⚠ Simulated prices: not market data", path
        assert 'role="status"' in NOTICE.search(html).group(0)  # type: ignore[union-attr]
        assert 'data-unreal="simulated"' in html
        assert (
            '<abbr class="src src-unreal" title="Source: Simulated: not market data">SIM</abbr>'
            in html
        )
    market = client.get("/market").text
    movers = market[market.index('id="gainers"') : market.index('id="indices-title"')]
    assert ">SIM</abbr>" in movers


def test_a_page_without_prices_shows_no_notice(client: TestClient) -> None:
    response = client.get("/stock/NOPE")
    assert response.status_code == 404
    assert notice(response.text) == (False, "⚠")


def test_the_notice_follows_the_quotes_source_not_the_page() -> None:
    real = make_quote(source="finnhub")
    assert unreal_notice([real, None]) == ""
    assert unreal_notice([real, make_quote(source="simulated")]) == (
        "Simulated prices: not market data"
    )
    assert unreal_notice([make_quote(source="replay"), make_quote(source="simulated")]) == (
        "Simulated prices: not market data · Replayed prices: recorded, not live market data"
    )
    row = Renderer().quote_row(real, oob=False)
    assert 'data-unreal=""' in row
    assert '<abbr class="src" title="Source: Finnhub">FH</abbr>' in row


def test_replayed_prices_say_so_too() -> None:
    recording = str(ROOT / "data" / "sample-replay.jsonl")
    env = {"FEEDS": "replay", "REPLAY_FILE": recording, "DEFAULT_WATCHLIST": "AAPL,MSFT"}
    with app_client(env) as client:
        wait_priced(client, "AAPL", "MSFT")
        html = client.get("/").text
        shown, text = notice(html)
        assert shown and text == "⚠ Replayed prices: recorded, not live market data"
        assert html.count('data-unreal="replayed"') == 2
        assert html.count(">REPLAY</abbr>") == 2
