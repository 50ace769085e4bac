"""Price alerts across fetcher failovers and restarts (real replicas, real redis-server): an
alert set before its fetcher dies fires once after the crossing, on the new fetcher; and a
replica that restarts and becomes the fetcher does not fire it again."""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest

from tests.fakes.provider import KEYS, FakeProviders, fake_server
from tests.support import AppServer, RedisServer, wait_for

__all__ = ["fake_server"]


@pytest.fixture
def pair(redis_url: str, fake_server: FakeProviders) -> Iterator[list[AppServer]]:
    fake_server.reset()
    env = {
        "REDIS_URL": redis_url, "LEASE_TTL": "1", "REGISTRY_TTL": "1.5", "FEEDS": "finnhub",
        "FINNHUB_API_KEY": KEYS["fh"], "FINNHUB_BASE_URL": fake_server.url("fh"),
        "FINNHUB_CALLS_PER_MINUTE": "100000", "FETCH_INTERVAL": "0.3",
        "BOARD_SYMBOLS": "IBM", "DEFAULT_WATCHLIST": "IBM", "DRAIN_TIMEOUT": "3",
    }  # fmt: skip
    servers = [AppServer({**env, "REPLICA_ID": f"r{n}"}) for n in range(2)]
    for server in servers:
        server.start()
    yield servers
    for server in servers:
        if server.proc is not None:
            server.stop()


def role(server: AppServer) -> str | None:
    try:
        found: str = server.details()["role"]
        return found
    except (httpx.HTTPError, KeyError):
        return None


def leader(servers: list[AppServer]) -> AppServer:
    found: list[AppServer] = []

    def one() -> bool:
        found[:] = [s for s in servers if s.proc is not None and role(s) == "leader"]
        return len(found) == 1

    wait_for(one, 15, "exactly one fetcher")
    return found[0]


def fired_times(server: AppServer, cookie: str) -> int:
    page = httpx.get(f"{server.base}/alerts", headers={"Cookie": f"stocktracker_alerts={cookie}"})
    found = re.search(r"fired (\d+)×", page.text)
    return int(found.group(1)) if found else 0


def priced(server: AppServer, price: str) -> bool:
    body = httpx.get(f"{server.base}/api/quotes", params={"symbols": "IBM"}).json()
    return any(Decimal(q["price"]) == Decimal(price) for q in body["quotes"])


def test_an_alert_survives_its_fetcher_and_fires_once(
    pair: list[AppServer], fake_server: FakeProviders, redis_server: RedisServer
) -> None:
    fake_server.state.prices["IBM"] = Decimal("220")
    first = leader(pair)
    survivor = next(s for s in pair if s is not first)
    wait_for(lambda: priced(survivor, "220"), 15, "IBM at 220")
    with httpx.Client() as browser:
        answer = browser.post(
            f"{survivor.base}/alerts", data={"symbol": "IBM", "kind": "above", "value": "230"},
            follow_redirects=False,
        )  # fmt: skip
        assert answer.status_code == 303, answer.text
        cookie = browser.cookies["stocktracker_alerts"]
    first.kill()  # the fetcher dies (SIGKILL: no lease release, no drain)
    fake_server.state.prices["IBM"] = Decimal("231")  # crosses while nobody fetches
    assert leader(pair) is survivor
    wait_for(lambda: fired_times(survivor, cookie) == 1, 15, "the alert to fire on the survivor")
    # The killed replica comes back, the survivor is stopped: the restarted one fetches now, finds
    # the stored price still above 230 at the start of its term, and must not fire again. The
    # price then moves within the band, still above: nothing either.
    first.start()
    survivor.stop()
    assert leader(pair) is first
    fake_server.state.prices["IBM"] = Decimal("231.5")
    wait_for(lambda: priced(first, "231.5"), 15, "IBM at 231.5 from the new fetcher")
    assert fired_times(first, cookie) == 1
    inbox = redis_server.cli("LRANGE", f"alerts:inbox:{owner(first, cookie)}", "0", "-1")
    assert inbox.count('"type":"alert"') == 1  # one firing waits for a tab: not two


def owner(server: AppServer, cookie: str) -> str:
    return "anon:" + cookie.split(".")[1]
