"""Price alerts in-process (memory bus, simulated feed): whose they are with access control on,
and delivery to a WebSocket page in both wire formats."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from app.alerts import delivery as delivery_module
from app.alerts.identity import COOKIE
from app.main import ALERTS_BURST
from tests.fast.inprocess import message
from tests.unit.asgi import TestClient, app_client

TOKEN = "alice-token-0123456789abcdef"


@pytest.fixture
def private() -> Iterator[TestClient]:
    with app_client({"ACCESS_TOKENS": f"alice:{TOKEN}", "POLL_TIMEOUT": "1"}) as client:
        yield client


def test_signed_in_users_alerts_are_theirs_in_every_browser(private: TestClient) -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    answer = private.post(
        "/alerts", data={"symbol": "TCS", "kind": "move", "value": "5", "note": "mine"},
        headers=bearer, follow_redirects=False,
    )  # fmt: skip
    assert answer.status_code == 303, answer.text
    assert COOKIE not in answer.headers.get("set-cookie", "")  # the user is the identity
    signed_in = private.post("/login", data={"token": TOKEN}, follow_redirects=False)
    assert signed_in.status_code == 303
    page = private.get("/alerts")  # another browser of alice's: her session cookie
    assert page.status_code == 200 and "mine" in page.text
    private.cookies.clear()
    assert private.get("/alerts", follow_redirects=False).status_code == 303  # to /login


def fired(ws: object, within: float = 15.0) -> str:
    """The next alert frame's data (JSON or HTML), skipping everything else."""
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        data = message(ws, left)  # type: ignore[arg-type]
        text = data.decode() if isinstance(data, bytes) else data
        if '"type":"alert"' in text or "alert-fired" in text:
            return text
    raise AssertionError(f"no alert within {within} s")


@pytest.mark.parametrize("fmt", ["json", "html"])
def test_an_alert_reaches_an_open_page(client: TestClient, fmt: str) -> None:
    # Two tiny moves, one either way: the simulated price crosses one of them within seconds.
    for value in ("0.01", "-0.01"):
        answer = client.post(
            "/alerts", data={"symbol": "TCS", "kind": "move", "value": value},
            follow_redirects=False,
        )  # fmt: skip
        assert answer.status_code == 303, answer.text
    cookie = {"Cookie": f"{COOKIE}={client.cookies[COOKIE]}"}
    with client.websocket_connect(f"/ws?format={fmt}", headers=cookie) as ws:
        text = fired(ws)
    if fmt == "json":
        alert = orjson.loads(text)
        assert alert["symbol"] == "TCS" and alert["source"] == "simulated"
        assert alert["condition"].startswith("moves ") and "owner" not in alert
    else:
        assert text.startswith('<div class="alert-fired" hidden data-seq=')
        assert 'data-symbol="TCS"' in text and 'data-source="simulated"' in text


def test_alerts_stored_per_client_address_are_rate_limited(client: TestClient) -> None:
    """A new browser is one cookie away: the per-owner bound alone would not stop one address
    from filling the store. Attempts that store nothing do not count."""
    for _ in range(3):
        bad = client.post("/alerts", data={"symbol": "TCS", "kind": "move", "value": "0"})
        assert bad.status_code == 422
    for n in range(ALERTS_BURST + 1):
        client.cookies.clear()  # a fresh browser each time: no per-owner bound in the way
        answer = client.post(
            "/alerts", data={"symbol": "TCS", "kind": "move", "value": "5"},
            follow_redirects=False,
        )  # fmt: skip
        if n < ALERTS_BURST:
            assert answer.status_code == 303, (n, answer.text)
    assert answer.status_code == 429
    assert "Too many alerts set from your address" in answer.text


def test_a_throttled_attempt_prices_nothing(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rate is checked before the symbol is priced: refused attempts cost the feed nothing."""
    from app.endpoints import alerts as endpoint

    asked: list[str] = []
    real = endpoint.priced  # type: ignore[attr-defined]

    async def priced(svc: Any, symbols: list[str], client_address: str) -> Any:
        asked.extend(symbols)
        return await real(svc, symbols, client_address)

    monkeypatch.setattr(endpoint, "priced", priced)
    for _ in range(ALERTS_BURST):
        client.cookies.clear()
        answer = client.post(
            "/alerts", data={"symbol": "TCS", "kind": "move", "value": "5"},
            follow_redirects=False,
        )  # fmt: skip
        assert answer.status_code == 303, answer.text
    asked.clear()
    refused = client.post("/alerts", data={"symbol": "INFY", "kind": "move", "value": "5"})
    assert refused.status_code == 429 and asked == []


def test_a_slow_inbox_holds_back_no_connections_prices(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The initial subscription goes first; the inbox read after it is bounded in time."""
    from app.alerts.memory_store import MemoryAlertStore

    answer = client.post(
        "/alerts", data={"symbol": "TCS", "kind": "move", "value": "5"}, follow_redirects=False
    )
    assert answer.status_code == 303, answer.text

    async def stuck(self: MemoryAlertStore, owner: str) -> list[bytes]:
        await asyncio.Event().wait()  # Redis not answering
        return []

    monkeypatch.setattr(MemoryAlertStore, "inbox", stuck)
    monkeypatch.setattr(delivery_module, "INBOX_TIMEOUT", 4.0)
    cookie = {"Cookie": f"{COOKIE}={client.cookies[COOKIE]}"}
    started = time.monotonic()
    with client.websocket_connect("/ws?symbols=TCS", headers=cookie) as ws:
        deadline = started + 3  # before the inbox read gives up
        while (left := deadline - time.monotonic()) > 0:
            got = orjson.loads(message(ws, left))
            if got["type"] in ("snapshot", "quote", "batch"):
                break
        else:
            raise AssertionError("no price while the inbox did not answer")
