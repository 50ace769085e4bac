"""`/health`, `/ready` and `/metrics` in-process: what each answers, and to whom."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.fast.inprocess import receive
from tests.support import wait_for
from tests.unit.asgi import TestClient, app_client

OPERATOR = "operator-token-0123456789"


def gauge(client: TestClient, name: str, **labels: str) -> float:
    text = client.get("/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            own = {k: v for k, v in sample.labels.items() if k != "replica"}
            if sample.name == name and own == labels:
                return float(sample.value)
    raise AssertionError(f"no {name}{labels} in /metrics")


def test_health_is_alive_and_names_the_replica(client: TestClient) -> None:
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["replica"] and body["uptime_seconds"] >= 0


def test_ready_with_details_when_nobody_guards_them(client: TestClient) -> None:
    def ready() -> bool:
        return bool(client.get("/ready").status_code == 200)

    wait_for(ready, 5, "/ready to answer 200")
    body = client.get("/ready").json()
    assert body["ready"] is True and body["reasons"] == []
    details = body["details"]
    assert (details["backend"], details["feed"], details["role"]) == (
        "memory",
        "simulated",
        "leader",
    )
    assert details["listener"]["connected"] is True and details["fetch_ticks"] >= 1


def test_metrics_count_an_open_websocket_and_forget_it_when_closed(client: TestClient) -> None:
    websocket = {"transport": "websocket"}
    assert gauge(client, "stocktracker_connections", **websocket) == 0
    with client.websocket_connect("/ws?symbols=TCS,INFY") as ws:
        receive(ws)  # welcome: the connection is registered
        assert gauge(client, "stocktracker_connections", **websocket) == 1
        wait_for(lambda: gauge(client, "stocktracker_subscriptions") == 2, 5, "2 subscriptions")
        assert gauge(client, "stocktracker_connections", transport="longpoll") == 0
    wait_for(
        lambda: gauge(client, "stocktracker_connections", **websocket) == 0, 5, "the close counted"
    )
    assert gauge(client, "stocktracker_subscriptions") == 0


def test_metrics_follow_the_scrapers_accept_header(client: TestClient) -> None:
    plain = client.get("/metrics")
    assert plain.headers["content-type"].startswith("text/plain; version=0.0.4")
    open_metrics = client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
    assert open_metrics.text.rstrip().endswith("# EOF")


def test_an_operator_token_guards_metrics_and_trims_ready() -> None:
    with app_client({"OPERATOR_TOKEN": OPERATOR}) as client:
        for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": OPERATOR}):
            refused = client.get("/metrics", headers=headers)
            assert refused.status_code == 401, headers
            assert refused.headers["www-authenticate"].startswith("Bearer")
            assert OPERATOR not in refused.text
            assert set(client.get("/ready", headers=headers).json()) == {"ready"}
        allowed = {"Authorization": f"Bearer {OPERATOR}"}
        assert "stocktracker_connections" in client.get("/metrics", headers=allowed).text
        assert "details" in client.get("/ready", headers=allowed).json()
        assert client.get("/health").status_code == 200  # probes never need a credential
