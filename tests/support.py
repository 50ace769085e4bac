"""Real parts for tests: a redis-server and the app under uvicorn, each on a free port.

Everything waits against a deadline and polls; nothing sleeps for a fixed time hoping it is enough.
"""

from __future__ import annotations

import asyncio
import base64
import html
import os
import random
import re
import resource
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
_REPLICA_LAST = re.compile(r',replica="[^"]*"')
_REPLICA_ONLY = re.compile(r'\{replica="[^"]*"\}')


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_EPHEMERAL_LOW = _ephemeral_low()
_given: set[int] = set()


def free_port() -> int:
    """A free loopback port below the kernel's ephemeral range: a port from inside it can be
    taken by any outgoing connection (a test's client, another xdist worker's) between this
    check and the server's bind. Random, so parallel workers rarely pick the same one; a server
    that still loses the race is started again on another port (RedisServer.start)."""
    low = 10_000
    for _ in range(200):
        port = random.randrange(low, max(low + 1, _EPHEMERAL_LOW))
        if port in _given:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given.add(port)
        return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        chosen: int = sock.getsockname()[1]
        return chosen


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
        self.bus = free_port()
        # `extra` replaces the default listening options; "{port}" stands for the chosen port
        # and "{bus}" for a second one (a cluster node's bus).
        self.extra = extra
        self.tls_ca = tls_ca
        self.proc: subprocess.Popen[bytes] | None = None
        self._started = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def args(self) -> list[str]:
        listen = self.extra or ["--port", "{port}"]
        return [a.replace("{port}", str(self.port)).replace("{bus}", str(self.bus)) for a in listen]

    def start(self) -> None:
        """Start and wait until it answers. On its first start a server whose port was taken
        meanwhile (it exits at once) moves to fresh ports; a restart keeps its port, as tests
        that stop and start it again expect."""
        for _ in range(5):
            self.proc = subprocess.Popen(
                [self.binary, *self.args, "--bind", "127.0.0.1", "--save", "", "--appendonly",
                 "no", "--daemonize", "no", "--loglevel", "warning"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            wait_for(self._answers_or_exited, 10, f"redis-server on port {self.port}")
            if self.proc.poll() is None:
                self._started = True
                return
            self.proc = None
            if self._started:
                break
            self.port, self.bus = free_port(), free_port()
        raise AssertionError(f"redis-server could not listen on port {self.port}")

    def _answers_or_exited(self) -> bool:
        return (self.proc is not None and self.proc.poll() is not None) or self._answers()

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


class RedisCluster:
    """A throwaway Redis Cluster of `masters` masters (each with `replicas` replicas) on free
    loopback ports: `redis-server --cluster-enabled yes` per node, then `redis-cli --cluster
    create`. Nodes can be killed (SIGKILL) and started again on the same port and config file.
    A node is declared failed after `node_timeout` ms, so a replica takes over within ~2 s."""

    def __init__(self, tmp: Path, masters: int = 3, replicas: int = 0, node_timeout: int = 1000):
        self.tmp = tmp
        self.node_timeout = node_timeout
        self.nodes = [RedisServer() for _ in range(masters * (1 + replicas))]
        self.masters, self.replicas = masters, replicas
        for node in self.nodes:
            # Its own directory (made at start: the port may change there): a replica writes
            # the RDB it syncs there (not in the checkout, where every later redis-server
            # would load it).
            node.extra = ["--port", "{port}", "--cluster-port", "{bus}", "--dir", str(tmp),
                          "--cluster-enabled", "yes",
                          "--cluster-config-file", "nodes-{port}.conf",
                          "--dbfilename", "dump-{port}.rdb",
                          "--cluster-node-timeout", str(node_timeout),
                          "--cluster-require-full-coverage", "no"]  # fmt: skip

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.nodes[0].port}"

    def start(self) -> None:
        try:
            for node in self.nodes:
                node.start()
            addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
            made = subprocess.run(
                ["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas",
                 str(self.replicas), "--cluster-yes"],
                capture_output=True, timeout=30,
            )  # fmt: skip
            assert made.returncode == 0, made.stdout.decode() + made.stderr.decode()
            wait_for(self.healthy, 30, "the cluster to be ok on every node")
            wait_for(self.synced, 30, "every replica in sync with its master")
        except BaseException:
            self.stop()
            raise

    def healthy(self) -> bool:
        """Every running node says cluster_state:ok and knows as many masters as were made."""
        for node in self.nodes:
            if node.proc is None:
                continue
            try:
                info = node.cli("CLUSTER", "INFO")
            except subprocess.SubprocessError:
                return False
            if "cluster_state:ok" not in info or f"cluster_size:{self.masters}" not in info:
                return False
        return True

    def synced(self) -> bool:
        """Every running replica has its link to its master up (a replica that never synced
        cannot take over)."""
        for node in self.nodes:
            if node.proc is None:
                continue
            info = node.cli("INFO", "replication")
            if "role:slave" in info and "master_link_status:up" not in info:
                return False
        return True

    def owner(self, key: str) -> RedisServer:
        """The running node that serves `key`'s slot as master now."""
        node = next(n for n in self.nodes if n.proc is not None)
        slot = int(node.cli("CLUSTER", "KEYSLOT", key))
        for line in node.cli("CLUSTER", "NODES").splitlines():
            fields = line.split()
            if "master" not in fields[2] or "fail" in fields[2]:
                continue
            for span in fields[8:]:
                low, _, high = span.partition("-")
                if low.isdigit() and int(low) <= slot <= int(high or low):
                    port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
                    return next(n for n in self.nodes if n.port == port)
        raise AssertionError(f"no master serves slot {slot}")

    def kill(self, node: RedisServer) -> None:
        assert node.proc is not None
        node.proc.kill()
        node.proc.wait(10)
        node.proc = None

    def stop(self) -> None:
        for node in self.nodes:
            if node.proc is not None:
                node.proc.kill()
                node.proc.wait(10)
                node.proc = None


def _pings(sock: socket.socket) -> bool:
    sock.sendall(b"PING\r\n")
    # +PONG, or -NOAUTH from a server that wants a password: either way, it is up.
    return sock.recv(16)[:1] in (b"+", b"-")


class _PortTaken(Exception):
    """The app exited at start because its port was taken."""


class AppServer:
    """`python -m app` in its own process, as `make run` starts it."""

    def __init__(self, env: Mapping[str, str] | None = None, fd_limit: int | None = None) -> None:
        self.port = free_port()
        self.fd_limit = fd_limit  # the process's RLIMIT_NOFILE, soft and hard
        self.env = {
            **os.environ,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "FETCH_INTERVAL": "0.2",
            "SIM_SEED": "7",
            # Prices move at any hour: the tests of sessions set `calendar` themselves.
            "SIM_SESSIONS": "always",
            "LOG_LEVEL": "info",
            "DRAIN_GRACE": "0",  # tests stop servers often; the drain test sets its own
            # Tests poll /ready and /metrics in tight loops, all from 127.0.0.1: the per-client
            # request rate is tested on its own (test_limits).
            "CLIENT_HTTP_RATE": "0",
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"stocktracker-{self.port}.log"
        self._started = False

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self) -> None:
        """Start and wait until /health answers. On its first start an app whose port was taken
        meanwhile (by another xdist worker's server: it exits saying "address already in use")
        moves to a fresh port; a restart keeps its port, as tests that stop and start it expect."""
        for _ in range(5):
            self._spawn()
            try:
                wait_for(self._healthy, 20, f"the app on port {self.port} (log: {self.log_path})")
            except _PortTaken:
                if self._started:
                    raise
                self.proc = None
                self._log.close()
                self.port = free_port()
                self.env["PORT"] = str(self.port)
                self.log_path = self.log_path.with_name(f"stocktracker-{self.port}.log")
                continue
            self._started = True
            return
        raise AssertionError(f"the app found no free port (log: {self.log_path})")

    def _spawn(self) -> None:
        self._log = self.log_path.open("wb")
        limit = self.fd_limit

        def limit_fds() -> None:
            if limit is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app"], env=self.env, cwd=ROOT, stdout=self._log,
            stderr=subprocess.STDOUT, preexec_fn=limit_fds,
        )  # fmt: skip

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
        """/metrics without the `replica` label every series carries (one process here), so
        tests can look for `name{labels} value` lines as a single replica would write them."""
        return without_replica(httpx.get(f"{self.base}/metrics", timeout=5).text)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            self.proc.wait()
            if "address already in use" in self.log():
                raise _PortTaken(self.port)
            raise AssertionError(f"app exited with {self.proc.returncode}:\n{self.log()}")
        try:
            reply = httpx.get(f"{self.base}/health", timeout=1)
        except httpx.HTTPError:
            return False
        return reply.status_code == 200 and self._ours(reply.json().get("replica", ""))

    def _ours(self, replica: str) -> bool:
        """Whether /health was answered by our process, not by another worker's app that holds
        the port (ours then exits at bind, and the next poll sees it). The default replica id
        carries the pid of the one process that serves; with REPLICA_ID or several workers set,
        the port's owner is taken on trust."""
        if "REPLICA_ID" in self.env or self.env.get("WEB_CONCURRENCY", "1") != "1":
            return True
        return self.proc is not None and f"-{self.proc.pid}-" in replica


def without_replica(metrics: str) -> str:
    """Prometheus text without the `replica` label (the app puts it last in every series)."""
    return _REPLICA_ONLY.sub("", _REPLICA_LAST.sub("", metrics))


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


def client_frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """One masked client-to-server WebSocket frame, built by hand (for frames a WebSocket
    library would refuse to send: fragments with a close between them, invalid UTF-8)."""
    key = os.urandom(4)
    size = len(payload)
    first = bytes([(0x80 if fin else 0) | opcode])
    if size < 126:
        length = bytes([0x80 | size])
    elif size < 1 << 16:
        length = bytes([0x80 | 126]) + size.to_bytes(2, "big")
    else:
        length = bytes([0x80 | 127]) + size.to_bytes(8, "big")
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return first + length + key + masked


def raw_websocket(port: int, *, rcvbuf: int | None = None, path: str = "/ws") -> socket.socket:
    """A plain socket that has completed a WebSocket handshake with the app (blocking, 10 s
    timeout); whatever followed the handshake is left unread in the socket."""
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        .encode()
    )  # fmt: skip
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        if not byte:
            raise AssertionError(f"the server closed during the handshake: {head!r}")
        head += byte
    if not head.startswith(b"HTTP/1.1 101"):
        raise AssertionError(f"handshake refused: {head!r}")
    return sock


def server_frames(
    sock: socket.socket, within: float = 10.0, *, until_close_frame: bool = False
) -> list[tuple[int, bytes]]:
    """Read (opcode, payload) frames until the server closes the connection (or, with
    `until_close_frame`, until its close frame has come) or `within` passes."""
    data = b""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        data += chunk
        if until_close_frame and close_code(_frames(data)) is not None:
            break
    return _frames(data)


def _frames(data: bytes) -> list[tuple[int, bytes]]:
    frames: list[tuple[int, bytes]] = []
    i = 0
    while i + 2 <= len(data):
        opcode, size = data[i] & 0x0F, data[i + 1] & 0x7F
        i += 2
        if size == 126:
            size, i = int.from_bytes(data[i : i + 2], "big"), i + 2
        elif size == 127:
            size, i = int.from_bytes(data[i : i + 8], "big"), i + 8
        if i + size > len(data):
            break  # not all of it has arrived
        frames.append((opcode, data[i : i + size]))
        i += size
    return frames


def close_code(frames: list[tuple[int, bytes]]) -> int | None:
    """The code of the server's close frame among `frames`, if it sent one."""
    for opcode, payload in frames:
        if opcode == 8:
            return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
    return None


def http_raw(port: int, request: bytes, within: float = 10.0) -> bytes:
    """Send raw bytes as a request; what the server answers before closing (or `within`)."""
    with socket.create_connection(("127.0.0.1", port), timeout=within) as sock:
        try:
            sock.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before taking it all: read what it said
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return data
