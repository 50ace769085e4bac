"""The test helpers' own promises: a redis-server or an app whose port was taken before it bound
moves on."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support import AppServer, RedisServer, free_port


def test_free_ports_come_from_below_the_ephemeral_range_and_never_twice() -> None:
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    assert all(port < low for port in ports)


@contextmanager
def taken(port: int) -> Iterator[None]:
    """Another process's listener on `port`, as a server of another xdist worker would be."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        yield


def test_a_server_whose_port_was_taken_starts_on_another() -> None:
    server = RedisServer()
    chosen = server.port
    with taken(chosen):
        server.start()
        try:
            assert server.port != chosen
            assert "PONG" in server.cli("PING")
        finally:
            server.stop()


def test_an_app_whose_port_was_taken_starts_on_another_and_keeps_it_on_restart() -> None:
    server = AppServer()
    chosen = server.port
    with taken(chosen):
        server.start()
    try:
        moved = server.port
        assert moved != chosen and server.health().status_code == 200
        server.stop()
        server.start()
        assert server.port == moved and server.health().status_code == 200
    finally:
        server.stop()


def test_an_app_whose_port_another_app_holds_does_not_take_that_app_for_itself() -> None:
    first = AppServer()
    first.start()
    try:
        second = AppServer()
        second.port = first.port
        second.env["PORT"] = str(first.port)
        second.start()  # /health answers at once on that port: the first app's, not its own
        try:
            assert second.port != first.port
            assert str(second.proc.pid if second.proc else "?") in second.health().json()["replica"]
        finally:
            second.stop()
    finally:
        first.stop()
