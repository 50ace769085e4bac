"""Real parts for tests: a redis-server and the app under uvicorn, each on a free port.

Everything waits against a deadline and polls; nothing sleeps for a fixed time hoping it is enough.
"""

from __future__ import annotations

import asyncio
import html
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson
from websockets.asyncio.client import ClientConnection

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


async def eventually(
    probe: Callable[[], Awaitable[T | None]], within: float = 10.0, what: str = "condition"
) -> T:
    """Call `probe` until it returns something other than None (or False)."""
    deadline = time.monotonic() + within
    while True:
        result = await probe()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.02)


class RedisServer:
    """A throwaway redis-server that tests may stop and start again on the same port."""

    def __init__(self, extra: list[str] | None = None, tls_ca: Path | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: run `make test`, which installs it")
        self.binary = binary
        self.port = free_port()
        # `extra` replaces the default listening options; "{port}" stands for the chosen port.
        self.extra = [a.replace("{port}", str(self.port)) for a in extra] if extra else None
        self.tls_ca = tls_ca
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        listen = self.extra or ["--port", str(self.port)]
        self.proc = subprocess.Popen(
            [self.binary, *listen, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for(self._answers, 10, f"redis-server on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def cli(self, *args: str) -> str:
        out = subprocess.run(
            ["redis-cli", "-p", str(self.port), *args], capture_output=True, timeout=10, check=True
        )
        return out.stdout.decode()

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as raw:
                if self.tls_ca is None:
                    return _pings(raw)
                context = ssl.create_default_context(cafile=str(self.tls_ca))
                with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                    return _pings(tls)
        except OSError:
            return False


def _pings(sock: socket.socket) -> bool:
    sock.sendall(b"PING\r\n")
    # +PONG, or -NOAUTH from a server that wants a password: either way, it is up.
    return sock.recv(16)[:1] in (b"+", b"-")


class AppServer:
    """`python -m app` in its own process, as `make run` starts it."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.port = free_port()
        self.env = {
            **os.environ,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "FETCH_INTERVAL": "0.2",
            "SIM_SEED": "7",
            "LOG_LEVEL": "info",
            "DRAIN_GRACE": "0",  # tests stop servers often; the drain test sets its own
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"stocktracker-{self.port}.log"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self) -> None:
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app"], env=self.env, cwd=ROOT, stdout=self._log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_for(self._healthy, 20, f"the app on port {self.port} (log: {self.log_path})")

    def stop(self) -> int:
        """SIGTERM and wait for the drain; a process that hangs is killed, and the test fails."""
        code = 0
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"app ignored SIGTERM for 30s:\n{self.log()}") from None
            self.proc = None
            self._log.close()
        return code

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit by itself; its exit code."""
        assert self.proc is not None
        code = self.proc.wait(timeout)
        self.proc = None
        self._log.close()
        return code

    def health(self) -> httpx.Response:
        return httpx.get(f"{self.base}/health", timeout=5)

    def kill(self) -> None:
        """SIGKILL: no drain, no cleanup, as when a machine dies."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None
            self._log.close()

    def ready(self) -> httpx.Response:
        return httpx.get(f"{self.base}/ready", timeout=5)

    def details(self) -> dict[str, Any]:
        details: dict[str, Any] = self.ready().json()["details"]
        return details

    def metrics_text(self) -> str:
        return httpx.get(f"{self.base}/metrics", timeout=5).text

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"app exited with {self.proc.returncode}:\n{self.log()}")
        try:
            return httpx.get(f"{self.base}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False


async def recv_json(ws: ClientConnection, within: float = 10.0) -> dict[str, Any]:
    raw = await asyncio.wait_for(ws.recv(), within)
    obj: dict[str, Any] = orjson.loads(raw)
    return obj


async def recv_until(
    ws: ClientConnection, predicate: Callable[[dict[str, Any]], bool], within: float = 10.0
) -> dict[str, Any]:
    """Read messages until one matches; fail after `within` seconds in all."""
    deadline = time.monotonic() + within
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError("timed out waiting for a matching message")
        message = await recv_json(ws, remaining)
        if predicate(message):
            return message


def quotes_in(message: dict[str, Any]) -> list[dict[str, Any]]:
    if message.get("type") == "quote":
        return [message["quote"]]
    if message.get("type") in ("batch", "snapshot"):
        quotes: list[dict[str, Any]] = message["quotes"]
        return quotes
    return []


_CHART_POINTS = re.compile(r'<svg id="chart"[^>]* data-points="([^"]*)"')


def chart_points(page: str) -> list[list[Any]]:
    """The `[[source_time, "price"], ...]` a stock page's server-rendered chart starts with."""
    found = _CHART_POINTS.search(page)
    if found is None:
        raise AssertionError("no chart on this page")
    points: list[list[Any]] = orjson.loads(html.unescape(found.group(1)))
    return points
