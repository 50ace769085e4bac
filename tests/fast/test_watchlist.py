"""The watchlist forms in-process: the cookie they keep, their messages, htmx partials, refusals."""

from __future__ import annotations

import re
from http.cookies import SimpleCookie
from typing import Any

from tests.unit.asgi import TestClient

FORM = {"content-type": "application/x-www-form-urlencoded"}
HTMX = {**FORM, "HX-Request": "true"}


def keep(client: TestClient, symbols: str) -> None:
    """The browser's watchlist cookie (one: the ones the app set before are dropped)."""
    client.cookies.clear()
    client.cookies.set("watchlist", symbols)


def cookie_set(response: Any) -> str:
    """The watchlist the response stores (Starlette quotes the comma as \\054)."""
    jar: SimpleCookie = SimpleCookie()
    jar.load(response.headers["set-cookie"])
    return jar["watchlist"].value


def add(client: TestClient, symbol: str, headers: dict[str, str] = FORM) -> Any:
    return client.post(
        "/watchlist", content=f"symbol={symbol}", headers=headers, follow_redirects=False
    )


def symbols_on(html: str) -> list[str]:
    return re.findall(r'<tr id="q-[^"]+" class="quote [a-z ]+" data-symbol="([^"]+)"', html)


def message(html: str) -> str:
    found = re.search(r'<p id="watchlist-message" class="([^"]*)"[^>]*>([^<]*)</p>', html)
    assert found is not None
    return f"{found.group(1)}: {found.group(2)}"


def test_adding_redirects_home_and_the_cookie_keeps_the_list(client: TestClient) -> None:
    keep(client, "TCS")
    response = add(client, "+aapl+")
    assert (response.status_code, response.headers["location"]) == (303, "/")
    assert cookie_set(response) == "TCS,AAPL"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie
    assert symbols_on(client.get("/").text) == ["TCS", "AAPL"]


def test_an_unknown_symbol_is_a_422_page_keeping_what_was_typed(client: TestClient) -> None:
    keep(client, "TCS")
    response = add(client, "nope")
    assert response.status_code == 422 and "set-cookie" not in response.headers
    assert message(response.text) == (
        "message error: Unknown symbol “NOPE”: the simulated feed does not list it."
    )
    assert 'value="nope"' in response.text and 'aria-invalid="true"' in response.text
    assert symbols_on(response.text) == ["TCS"]


def test_invalid_empty_duplicate_and_full_each_say_why(client: TestClient) -> None:
    keep(client, "TCS")
    bad = add(client, "%3Cb%3E")
    assert bad.status_code == 422 and "is not a valid symbol" in message(bad.text)
    assert "<b>" not in bad.text.split('id="watchlist"')[1]  # what was typed, escaped
    empty = add(client, "")
    assert empty.status_code == 422 and message(empty.text).endswith("Type a symbol to add.")
    again = add(client, "TCS", HTMX)
    assert message(again.text) == "message notice: TCS is already on your watchlist."
    keep(client, "TCS,INFY,AAPL,MSFT,RELIANCE")
    full = add(client, "WIPRO", HTMX)
    assert message(full.text) == (
        "message error: Your watchlist is full (5 symbols): remove one first."
    )
    assert "set-cookie" not in full.headers


def test_htmx_gets_the_watchlist_partial_and_the_new_cookie(client: TestClient) -> None:
    keep(client, "TCS")
    response = add(client, "INFY", HTMX)
    assert response.status_code == 200
    assert response.text.lstrip().startswith('<section id="watchlist"')  # no page around it
    assert "<html" not in response.text
    assert symbols_on(response.text) == ["TCS", "INFY"]
    assert message(response.text) == "message notice: Added INFY."
    assert cookie_set(response) == "TCS,INFY"


def test_removing_by_form_post_and_by_htmx_delete(client: TestClient) -> None:
    keep(client, "TCS,NIFTY 50,AAPL")
    posted = client.post("/watchlist/NIFTY%2050/remove", follow_redirects=False)
    assert posted.status_code == 303 and cookie_set(posted) == "TCS,AAPL"
    keep(client, "TCS,AAPL")
    deleted = client.delete("/watchlist/tcs", headers={"HX-Request": "true"})
    assert symbols_on(deleted.text) == ["AAPL"]
    assert message(deleted.text) == "message notice: Removed TCS."
    # Removing what is not there changes nothing and says nothing.
    keep(client, "AAPL")
    nothing = client.delete("/watchlist/MSFT", headers={"HX-Request": "true"})
    assert symbols_on(nothing.text) == ["AAPL"] and message(nothing.text) == "message: "


def test_an_emptied_watchlist_stays_empty(client: TestClient) -> None:
    keep(client, "")
    html = client.get("/").text
    assert symbols_on(html) == [] and "Your watchlist is empty" in html


def test_a_forged_cookie_shows_only_valid_known_symbols(client: TestClient) -> None:
    keep(client, "AAPL,<x>,NOPE,,tcs")
    assert symbols_on(client.get("/").text) == ["AAPL", "TCS"]


def test_a_cross_site_post_is_refused_and_changes_nothing(client: TestClient) -> None:
    keep(client, "TCS")
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"}):
        response = add(client, "AAPL", {**FORM, **headers})
        assert response.status_code == 403 and "set-cookie" not in response.headers
        assert response.headers["content-type"].startswith("text/html")
    same = add(client, "AAPL", {**FORM, "Sec-Fetch-Site": "same-origin"})
    assert same.status_code == 303


def test_an_undo_puts_a_symbol_back_at_its_place_and_a_bad_place_means_the_end(
    client: TestClient,
) -> None:
    for at, expected in [
        ("1", "TCS,INFY,AAPL"), ("0", "INFY,TCS,AAPL"), ("2", "TCS,AAPL,INFY"),
        ("9", "TCS,AAPL,INFY"), ("", "TCS,AAPL,INFY"), ("-1", "TCS,AAPL,INFY"),
        ("1e3", "TCS,AAPL,INFY"), ("9" * 40, "TCS,AAPL,INFY"), ("%C2%B2", "TCS,AAPL,INFY"),
    ]:  # fmt: skip
        keep(client, "TCS,AAPL")
        response = client.post(
            "/watchlist", content=f"symbol=INFY&at={at}", headers=HTMX, follow_redirects=False
        )
        assert cookie_set(response) == expected, at
        assert symbols_on(response.text) == expected.split(","), at
