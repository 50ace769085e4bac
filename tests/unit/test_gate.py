"""Access control end to end in-process: the gate, the login page, operator endpoints, /ws."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.websockets import WebSocketDisconnect

from app.access import SESSION_COOKIE
from tests.unit.asgi import TestClient, app_client

TOKEN = "alice-token-0123456789abcdef"
OPERATOR = "operator-token-0123456789"
PRIVATE = {"ACCESS_TOKENS": f"alice:{TOKEN}"}
AUTH = {"Authorization": f"Bearer {TOKEN}"}
OPERATE = {"Authorization": f"Bearer {OPERATOR}"}


@pytest.fixture
def client() -> Iterator[TestClient]:
    with app_client(PRIVATE) as client:
        yield client


def log_in(client: TestClient, token: str = TOKEN, next_: str = "/") -> Any:
    return client.post(
        "/login", data={"token": token, "next": next_}, follow_redirects=False,
        headers={"Sec-Fetch-Site": "same-origin"},
    )  # fmt: skip


def test_pages_redirect_to_the_login_page_and_back(client: TestClient) -> None:
    for path, login in [
        ("/", "/login"),
        ("/market", "/login?next=/market"),
        ("/stock/TCS?x=1", "/login?next=/stock/TCS%3Fx%3D1"),
    ]:
        response = client.get(path, follow_redirects=False)
        assert (response.status_code, response.headers["location"]) == (303, login)
    form = client.post("/watchlist", data={"symbol": "WIPRO"}, follow_redirects=False)
    assert (form.status_code, form.headers["location"]) == (303, "/login")
    assert "set-cookie" not in form.headers
    htmx = client.get("/market", headers={"HX-Request": "true"}, follow_redirects=False)
    assert (htmx.status_code, htmx.headers["hx-redirect"]) == (401, "/login?next=/market")


def test_api_and_assets_answer_401(client: TestClient) -> None:
    for path in ("/api/quotes", "/api/poll?symbols=TCS"):
        response = client.get(path)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert client.get("/static/app.js").status_code == 401
    # What the login page itself loads stays open.
    assert client.get("/static/app.css").status_code == 200
    assert client.get("/static/favicon.svg").status_code == 200


def test_probes_stay_open_and_ready_is_bare(client: TestClient) -> None:
    assert client.get("/health").json()["status"] == "ok"
    ready = client.get("/ready")
    assert ready.json() == {"ready": True} and ready.status_code == 200
    assert client.get("/metrics").status_code == 401
    # Without OPERATOR_TOKEN an access credential opens both.
    assert "details" in client.get("/ready", headers=AUTH).json()
    assert "stocktracker_connections" in client.get("/metrics", headers=AUTH).text


def test_a_bearer_token_opens_everything(client: TestClient) -> None:
    assert client.get("/api/quotes?symbols=TCS", headers=AUTH).json()["quotes"]
    page = client.get("/market", headers=AUTH)
    assert page.status_code == 200 and "Sign out" in page.text
    wrong = {"Authorization": f"Bearer {TOKEN[:-1]}x"}
    assert client.get("/api/quotes", headers=wrong).status_code == 401


def test_login_sets_a_session_that_opens_everything_until_logout(client: TestClient) -> None:
    page = client.get("/login?next=/market")
    assert page.status_code == 200 and 'name="next" value="/market"' in page.text
    response = log_in(client, next_="/market")
    assert response.status_code == 303 and response.headers["location"] == "/market"
    cookie = response.headers["set-cookie"].lower()
    assert cookie.startswith(SESSION_COOKIE)
    assert all(part in cookie for part in ("httponly", "samesite=lax", "max-age=43200", "path=/"))
    assert "secure" not in cookie  # plain http here
    assert TOKEN not in cookie
    assert client.get("/market").status_code == 200
    assert client.get("/api/quotes?symbols=TCS").status_code == 200
    out = client.post("/logout", headers={"Sec-Fetch-Site": "same-origin"}, follow_redirects=False)
    assert out.headers["location"] == "/login"
    assert client.get("/market", follow_redirects=False).status_code == 303


def test_a_wrong_token_is_refused_and_not_shown_back(client: TestClient) -> None:
    guess = "guess-0123456789abcdef"
    response = log_in(client, token=guess, next_="/market")
    assert response.status_code == 401
    text = response.text
    assert "not a valid access token" in text and guess not in text
    assert 'value="/market"' in text
    assert SESSION_COOKIE not in response.headers.get("set-cookie", "")


def test_next_never_leaves_the_site(client: TestClient) -> None:
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        assert log_in(client, next_=target).headers["location"] == "/"


def test_login_attempts_are_rate_limited(client: TestClient) -> None:
    codes = [log_in(client, token="wrong-token-0123456789").status_code for _ in range(12)]
    assert codes[:10] == [401] * 10 and codes[10:] == [429, 429]
    assert log_in(client).status_code == 429


def test_successful_logins_are_not_limited(client: TestClient) -> None:
    assert {log_in(client).status_code for _ in range(15)} == {303}


def test_the_login_form_is_guarded_against_cross_site_posts(client: TestClient) -> None:
    response = client.post(
        "/login", data={"token": TOKEN}, follow_redirects=False,
        headers={"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"},
    )  # fmt: skip
    assert response.status_code == 403 and "set-cookie" not in response.headers


def test_over_https_the_session_cookie_is_secure() -> None:
    with app_client(PRIVATE, base_url="https://testserver") as client:
        cookie = log_in(client).headers["set-cookie"].lower()
        assert "secure" in cookie and "httponly" in cookie


def test_websocket_upgrades_need_credentials(client: TestClient) -> None:
    with pytest.raises(WebSocketDisconnect) as refused:
        with client.websocket_connect("/ws"):
            pass
    assert getattr(refused.value, "status_code", None) == 401
    with client.websocket_connect("/ws", headers=AUTH) as ws:
        assert ws.receive_json()["type"] == "welcome"
    log_in(client)
    with client.websocket_connect("/ws") as ws:  # the session cookie
        assert ws.receive_json()["type"] == "welcome"


def test_operator_token_guards_metrics_and_ready_details() -> None:
    with app_client({**PRIVATE, "OPERATOR_TOKEN": OPERATOR}) as client:
        assert client.get("/metrics", headers=AUTH).status_code == 401
        assert client.get("/ready", headers=AUTH).json() == {"ready": True}
        assert client.get("/metrics", headers=OPERATE).status_code == 200
        assert "details" in client.get("/ready", headers=OPERATE).json()
        # The operator token is not an access token.
        assert client.get("/api/quotes", headers=OPERATE).status_code == 401


def test_an_operator_token_alone_leaves_the_app_open() -> None:
    with app_client({"OPERATOR_TOKEN": OPERATOR}) as client:
        assert client.get("/").status_code == 200
        assert client.get("/login").status_code == 404
        assert client.get("/metrics").status_code == 401
        assert client.get("/ready").json() == {"ready": True}
        assert client.get("/metrics", headers=OPERATE).status_code == 200


def test_without_settings_everything_is_open_as_before() -> None:
    with app_client() as client:
        assert client.get("/", follow_redirects=False).status_code == 200
        assert "Sign out" not in client.get("/").text
        assert client.get("/login").status_code == 404
        assert "details" in client.get("/ready").json()
        assert client.get("/metrics").status_code == 200
