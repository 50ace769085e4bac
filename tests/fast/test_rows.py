"""The quote row partial's three states (priced, pending, rejected): one row, the same cells."""

from __future__ import annotations

import re
from dataclasses import replace

from app.models import Refusal
from app.rendering import Renderer
from tests.unit.test_models import make_quote

CELLS = re.compile(r'data-col="([a-z]+)">(.*?)</t[dh]>')
ORDER = ["symbol", "price", "change", "pct", "range", "open", "prev", "volume", "time", "source"]


def opening(row: str) -> dict[str, str]:
    return dict(re.findall(r'([a-z-]+)="([^"]*)"', row[: row.index(">") + 1]))


def cells(row: str) -> dict[str, str]:
    found = CELLS.findall(row)
    assert [name for name, _ in found] == ORDER
    return dict(found)


def test_pending_priced_and_rejected_rows_share_id_and_cells() -> None:
    renderer = Renderer()
    row = renderer.env.get_template("_quote_row.html")
    quote = make_quote(symbol="NIFTY 50")
    priced = renderer.quote_row(quote)
    pending = row.render(symbol="NIFTY 50", q=None, oob=True)
    rejected = renderer.rejected_row("NIFTY 50", "no such symbol", "twelvedata")
    assert {opening(r)["id"] for r in (priced, pending, rejected)} == {"q-NIFTY_2050"}
    for unpriced, state in ((pending, "pending"), (rejected, "rejected")):
        attributes = opening(unpriced)
        assert attributes["class"] == f"quote {state}"
        assert (attributes["data-epoch"], attributes["data-seq"]) == ("0", "0")
        assert attributes["data-price"] == attributes["data-volume"] == ""
        assert attributes["data-market"] == "unknown"
        shown = cells(unpriced)
        assert all(shown[c] == "—" for c in ("change", "pct", "range", "open", "prev", "volume"))
    assert cells(pending)["time"] == "waiting for data" and cells(pending)["source"] == "—"
    assert cells(rejected)["source"] == "twelvedata" and opening(rejected)["data-source"] == (
        "twelvedata"
    )
    shown = cells(priced)
    assert shown["price"] == "₹3,150.05" and shown["change"] == "+12.30"
    assert shown["pct"] == "+0.39%" and shown["range"] == "₹3,138.00 – ₹3,155.10"
    assert shown["volume"] == "1,200" and shown["source"] == "simulated"
    assert '<span class="name">' in shown["symbol"]


def test_a_closed_market_and_a_missing_volume_show_in_the_priced_row() -> None:
    quote = replace(make_quote(), market_open=False, volume=None, change=make_quote().change * -1)
    row = Renderer().quote_row(quote, oob=False)
    attributes = opening(row)
    assert attributes["class"] == "quote down closed" and "hx-swap-oob" not in attributes
    assert (attributes["data-market"], attributes["data-volume"]) == ("closed", "")
    assert cells(row)["volume"] == "—"
    # The tag says when the market opens again (NSE: a weekday at 09:15 IST).
    assert re.search(r'<span class="tag tag-closed" title="Market closed; opens [^"]+">', row)
    assert re.search(r">Closed · opens \w{3} (\d\d \w{3} )?09:15 IST</span>", row)


def test_a_refusal_wins_over_a_quote_and_actions_add_one_cell() -> None:
    renderer = Renderer()
    row = renderer.env.get_template("_quote_row.html")
    refused = {"TCS": Refusal("gone", None)}
    html = row.render(symbol="TCS", q=make_quote(), oob=False, refusals=refused, actions=True)
    assert opening(html)["class"] == "quote rejected" and "not priced by the feed" in html
    assert html.count('<td class="actions">') == 1 and "Remove TCS" in html


def test_an_end_of_day_price_says_so() -> None:
    eod = Renderer().quote_row(make_quote(source="alphavantage", exchange="BSE"), oob=False)
    assert '<span class="tag tag-eod"' in eod and ">End of day</span>" in eod
    live = Renderer().quote_row(make_quote(source="twelvedata"), oob=False)
    assert "tag-eod" not in live
