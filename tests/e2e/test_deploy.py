"""Deployment shapes: several workers on one host, and Redis over TLS with a password."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.pubsub import open_backend
from tests.e2e.test_replicas import open_client
from tests.pubsub.test_contract import Listener
from tests.support import AppServer, RedisServer, eventually, quotes_in, recv_json


async def test_workers_on_one_host_behave_like_replicas(
    redis_url: str, redis_server: RedisServer
) -> None:
    server = AppServer({"REDIS_URL": redis_url, "WEB_CONCURRENCY": "2", "LEASE_TTL": "1"})
    server.start()
    try:

        async def two_replicas() -> bool:
            ids = redis_server.cli("ZRANGE", "subscriptions:replicas", "0", "-1").split()
            return len(ids) == 2

        await eventually(two_replicas, 20, "both workers registered as replicas")
        holder = redis_server.cli("HGET", "fetcher:lease", "holder").strip()
        replica, _, nonce = holder.rpartition(":")  # the lease is held per process
        assert replica in redis_server.cli("ZRANGE", "subscriptions:replicas", "0", "-1").split()
        assert len(nonce) == 12
        # The kernel spreads connections over the workers; every one of them gets quotes.
        clients = [await open_client(server, "TCS") for _ in range(6)]
        for ws in clients:
            while not quotes_in(await recv_json(ws)):
                pass
            await ws.close()
        # Each worker is a replica of its own: its own listener, hearing the other's heartbeat.
        details = [server.details() for _ in range(30)]
        assert len({d["replica"] for d in details}) == 2, "requests never reached both workers"
        assert all(len(d["peers"]) == 1 for d in details)
        assert sorted(d["role"] for d in {d["replica"]: d for d in details}.values()) == [
            "follower",
            "leader",
        ]
    finally:
        server.stop()


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[RedisServer, Path]]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    ca, key, cert = tmp_path / "ca.pem", tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    shutil.copy(cert, ca)
    server = RedisServer(
        extra=["--port", "0", "--tls-port", "{port}", "--tls-cert-file", str(cert),
               "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca),
               "--tls-auth-clients", "no", "--requirepass", "s3cret"],
        tls_ca=ca,
    )  # fmt: skip
    server.start()
    yield server, ca
    server.stop()


async def test_rediss_with_password_end_to_end(tls_redis: tuple[RedisServer, Path]) -> None:
    server, ca = tls_redis
    url = f"rediss://:s3cret@127.0.0.1:{server.port}/0"
    options = {"ssl_ca_certs": str(ca), "ssl_cert_reqs": "required"}
    async with open_backend(url, registry_ttl=2, client_name="t", redis_options=options) as b:
        async with Listener(b, ["market-data:updates"]) as listener:
            await b.bus.publish("market-data:updates", b"over tls")
            assert (await listener.get()).data == b"over tls"
    app = AppServer({"REDIS_URL": url, "REDIS_TLS_CA_CERTS": str(ca)})
    app.start()
    try:
        ws = await open_client(app, "INFY")
        while not quotes_in(await recv_json(ws)):
            pass
        await ws.close()
        await eventually(lambda: _ok(app), 10, "ready over TLS")
        assert "s3cret" not in app.log()
    finally:
        app.stop()


async def _ok(app: AppServer) -> bool:
    return app.ready().status_code == 200
