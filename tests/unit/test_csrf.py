"""The cross-site guard: each header combination a browser (or a program) sends with a form."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.datastructures import Headers

from app.csrf import cross_site
from tests.unit.asgi import TestClient, app_client

EVIL = "http://evil.example"


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with app_client({"ALLOWED_ORIGINS": "https://partner.example"}) as client:
        yield client


def add(client: TestClient, headers: dict[str, str], path: str = "/watchlist") -> int:
    response = client.post(path, data={"symbol": "WIPRO"}, headers=headers, follow_redirects=False)
    if response.status_code == 403:
        assert "set-cookie" not in response.headers  # the watchlist is left as it was
    else:
        assert "WIPRO" in response.headers["set-cookie"]
    status: int = response.status_code
    return status


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, 303),  # a program (curl): no browser acting for another site
        ({"Sec-Fetch-Site": "same-origin", "Origin": "http://testserver"}, 303),
        ({"Sec-Fetch-Site": "none"}, 303),  # typed in or a bookmark
        ({"Sec-Fetch-Site": "cross-site", "Origin": EVIL}, 403),
        ({"Sec-Fetch-Site": "same-site", "Origin": "http://shop.testserver"}, 403),
        ({"Sec-Fetch-Site": "cross-site"}, 403),
        ({"Sec-Fetch-Site": "whatever", "Origin": "http://testserver"}, 403),
        ({"Origin": "http://testserver"}, 303),  # an older browser, same origin
        ({"Origin": "HTTP://TestServer/"}, 303),
        ({"Origin": EVIL}, 403),
        ({"Origin": "https://testserver"}, 403),  # not this origin: the request came over http
        ({"Origin": "http://testserver:8080"}, 403),
        ({"Origin": "null"}, 403),  # a sandboxed frame or a cross-site redirect
        ({"Sec-Fetch-Site": "cross-site", "Origin": "https://partner.example"}, 303),  # listed
        ({"Origin": "https://partner.example"}, 303),
    ],
)
def test_form_posts_by_header_combination(
    client: TestClient, headers: dict[str, str], expected: int
) -> None:
    assert add(client, headers) == expected


def test_the_refusal_is_an_html_page_for_forms_and_json_for_the_api(client: TestClient) -> None:
    page = client.post("/watchlist", data={"symbol": "X"}, headers={"Origin": EVIL})
    assert page.status_code == 403
    assert page.headers["content-type"].startswith("text/html")
    assert "Request refused" in page.text and "Nothing was changed" in page.text
    assert "content-security-policy" in page.headers
    api = client.post("/api/quotes", headers={"Sec-Fetch-Site": "cross-site", "Origin": EVIL})
    assert api.status_code == 403
    assert api.json()["error"]["code"] == "cross_site"


@pytest.mark.parametrize("method", ["DELETE", "PUT", "PATCH"])
def test_every_state_changing_method_is_guarded(client: TestClient, method: str) -> None:
    response = client.request(method, "/watchlist/TCS", headers={"Origin": EVIL})
    assert response.status_code == 403
    assert "set-cookie" not in response.headers


def test_remove_form_and_htmx_delete_are_guarded(client: TestClient) -> None:
    cross = {"Sec-Fetch-Site": "cross-site", "Origin": EVIL}
    assert client.post("/watchlist/TCS/remove", headers=cross).status_code == 403
    same = {"Sec-Fetch-Site": "same-origin", "HX-Request": "true"}
    response = client.delete("/watchlist/TCS", headers=same)
    assert response.status_code == 200 and "Removed TCS." in response.text


def test_reads_are_not_guarded(client: TestClient) -> None:
    cross = {"Sec-Fetch-Site": "cross-site", "Origin": EVIL}
    assert client.get("/", headers=cross).status_code == 200
    assert client.get("/api/quotes?symbols=TCS", headers=cross).status_code == 200


def test_a_wildcard_origin_opens_the_websocket_not_the_forms() -> None:
    with app_client({"ALLOWED_ORIGINS": "*"}) as client:
        assert add(client, {"Sec-Fetch-Site": "cross-site", "Origin": EVIL}) == 403
        assert add(client, {"Origin": EVIL}) == 403


def test_over_https_the_origin_is_https_and_the_cookie_secure() -> None:
    with app_client(base_url="https://testserver") as client:
        assert add(client, {"Origin": "http://testserver"}) == 403
        response = client.post(
            "/watchlist", data={"symbol": "WIPRO"}, headers={"Origin": "https://testserver"},
            follow_redirects=False,
        )  # fmt: skip
        assert response.status_code == 303
        cookie = response.headers["set-cookie"].lower()
        assert "secure" in cookie and "samesite=lax" in cookie and "httponly" in cookie


def test_over_http_the_cookie_is_not_secure(client: TestClient) -> None:
    response = client.post("/watchlist", data={"symbol": "WIPRO"}, follow_redirects=False)
    cookie = response.headers["set-cookie"].lower()
    assert "secure" not in cookie and "samesite=lax" in cookie


def test_without_a_host_header_only_listed_origins_pass() -> None:
    trusted = frozenset({"https://partner.example"})
    assert cross_site(Headers({"origin": "http://x"}), "http", trusted)
    assert not cross_site(Headers({"origin": "https://partner.example"}), "http", trusted)
