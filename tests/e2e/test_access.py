"""Access control on the real server (`python -m app`): tokens, login sessions, /ws refused before
the upgrade, operator endpoints, credentials kept out of logs, and which proxies are believed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from app.access import SESSION_COOKIE
from tests.e2e.conftest import serve
from tests.support import AppServer, quotes_in, recv_json, recv_until

TOKEN = "alice-e2e-token-5f0c9a1b7d2e"
OPERATOR = "operator-e2e-token-3c8d1e6f"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
OPERATE = {"Authorization": f"Bearer {OPERATOR}"}
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}


@pytest.fixture(scope="module")
def private() -> Iterator[AppServer]:
    # Debug logging: the most the server ever writes, and still no credential in it.
    yield from serve({
        "ACCESS_TOKENS": f"alice:{TOKEN}", "OPERATOR_TOKEN": OPERATOR, "LOG_LEVEL": "debug",
    })  # fmt: skip


async def session_cookie(http: httpx.AsyncClient) -> str:
    response = await http.post(
        "/login", data={"token": TOKEN, "next": "/market"}, headers=SAME_ORIGIN
    )
    assert response.status_code == 303 and response.headers["location"] == "/market"
    value = response.cookies[SESSION_COOKIE]
    assert value
    return value


async def live_quote(url: str, headers: dict[str, str]) -> dict[str, object]:
    async with connect(url, additional_headers=headers) as ws:
        assert (await recv_json(ws))["type"] == "welcome"
        await ws.send(orjson.dumps({"action": "subscribe", "symbols": ["TCS"], "id": "s"}))
        message = await recv_until(ws, lambda m: m["type"] in ("quote", "batch", "snapshot"))
        return quotes_in(message)[0]


@pytest.fixture
async def http(private: AppServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=private.base, timeout=10) as client:
        yield client


async def test_without_credentials_pages_redirect_api_401_ws_refused(
    private: AppServer, http: httpx.AsyncClient
) -> None:
    page = await http.get("/market")
    assert (page.status_code, page.headers["location"]) == (303, "/login?next=/market")
    login = await http.get("/login?next=/market")
    assert login.status_code == 200 and 'name="token"' in login.text
    api = await http.get("/api/quotes?symbols=TCS")
    assert api.status_code == 401 and api.json()["error"]["code"] == "unauthorized"
    for headers in ({}, {"Authorization": "Bearer not-the-token-0000000000"}):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(private.ws_url, additional_headers=headers):
                pass
        assert refused.value.response.status_code == 401  # before the upgrade


async def test_a_bearer_token_opens_pages_api_and_ws(
    private: AppServer, http: httpx.AsyncClient
) -> None:
    assert (await http.get("/market", headers=AUTH)).status_code == 200
    api = await http.get("/api/quotes?symbols=TCS", headers=AUTH)
    assert api.status_code == 200 and api.json()["quotes"][0]["symbol"] == "TCS"
    assert (await live_quote(private.ws_url, AUTH))["symbol"] == "TCS"


async def test_a_login_session_opens_pages_long_poll_and_ws(
    private: AppServer, http: httpx.AsyncClient
) -> None:
    cookie = await session_cookie(http)  # the client keeps it
    page = await http.get("/market")
    assert page.status_code == 200 and "Sign out" in page.text
    poll = await http.get("/api/poll?symbols=TCS")
    assert poll.status_code == 200 and poll.json()["quotes"]
    quote = await live_quote(private.ws_url, {"Cookie": f"{SESSION_COOKIE}={cookie}"})
    assert quote["symbol"] == "TCS"


def test_metrics_need_the_operator_token_and_ready_stays_usable(private: AppServer) -> None:
    assert private.health().status_code == 200
    bare = private.ready()
    assert (bare.status_code, bare.json()) == (200, {"ready": True})
    assert httpx.get(f"{private.base}/ready", headers=AUTH).json() == {"ready": True}
    detailed = httpx.get(f"{private.base}/ready", headers=OPERATE).json()
    assert detailed["ready"] and detailed["details"]["feed"] == "simulated"
    assert httpx.get(f"{private.base}/metrics").status_code == 401
    assert httpx.get(f"{private.base}/metrics", headers=AUTH).status_code == 401
    metrics = httpx.get(f"{private.base}/metrics", headers=OPERATE)
    assert metrics.status_code == 200 and "stocktracker_connections" in metrics.text


async def test_no_token_or_session_in_logs_pages_or_metrics(
    private: AppServer, http: httpx.AsyncClient
) -> None:
    wrong = "wrong-e2e-token-9a8b7c6d5e4f"
    await http.post("/login", data={"token": wrong}, headers=SAME_ORIGIN)
    cookie = await session_cookie(http)
    texts = [
        (await http.get("/market")).text,
        (await http.get("/login?next=/market")).text,
        (await http.get("/metrics", headers=OPERATE)).text,
        (await http.get("/ready", headers=OPERATE)).text,
    ]
    await live_quote(private.ws_url, AUTH)
    await live_quote(private.ws_url, {"Cookie": f"{SESSION_COOKIE}={cookie}"})
    with pytest.raises(InvalidStatus):
        async with connect(private.ws_url, additional_headers={"Authorization": f"Bearer {wrong}"}):
            pass  # pragma: no cover
    log = private.log()
    assert "login: alice signed in" in log and "not an access token" in log  # it did log
    for secret in (TOKEN, OPERATOR, cookie, cookie.rsplit(".", 1)[1], wrong):
        assert secret not in log
        assert all(secret not in text for text in texts)


@pytest.fixture(scope="module")
def untrusted_proxy() -> Iterator[AppServer]:
    yield from serve({"FORWARDED_ALLOW_IPS": "10.9.8.7"})


def test_only_trusted_proxies_say_the_request_was_https(
    app_server: AppServer, untrusted_proxy: AppServer
) -> None:
    """The default trusts 127.0.0.1 (where a local proxy runs), so X-Forwarded-Proto makes the
    watchlist cookie Secure; from an address not in FORWARDED_ALLOW_IPS it is ignored."""
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}

    def cookie(server: AppServer) -> str:
        response = httpx.post(f"{server.base}/watchlist/TCS/remove", headers=forwarded)
        assert response.status_code == 303
        return response.headers["set-cookie"].lower()

    assert "secure" in cookie(app_server)
    assert "secure" not in cookie(untrusted_proxy)
