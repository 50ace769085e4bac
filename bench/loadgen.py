"""One load-generator process: N clients against the app, measuring what each receives.

Run by `bench.run` (one or more of these, pinned to the core the server does not use); it talks
JSON lines on stdout: `{"event": "ready"}` once every client is connected and subscribed, then
`{"event": "result", ...}` at the end. Input is one JSON object on the command line (see `Spec`).

Latency is `receive time - published_at` of every quote in a live frame (`quote` / `batch`, or a
long-poll answer after the first), in whole milliseconds on the same machine's clock. Snapshots
only set the baseline of the seq check. A gap is a missing `seq` of a symbol within one epoch;
the server may legitimately skip versions for a client that falls behind (it conflates to the
latest value), so `bench.run` reports client-seen gaps next to the server's conflation counter.
"""

from __future__ import annotations

import asyncio
import gc
import json
import random
import resource
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote as urlquote

import orjson
import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

LAT_SLOTS = 60_001  # 1 ms buckets up to 60 s; the last one holds everything slower
LIVE_FRAMES = (b'{"type":"batch"', b'{"type":"quote"')
DIGEST_CHUNK = 200
# Spread client sockets over 127.0.0.2 .. 127.0.0.65 (ports are per source address); the
# server counts each address as one client (app.clients), so the suite lifts those per-client
# limits for its honest workloads, where each address stands for hundreds of clients.
SOURCES = 64


@dataclass
class Spec:
    mode: str  # ws | poll | idle | storm
    urls: list[str]  # ws://... (storm: clients move on to the next URL after a 1012)
    clients: int
    symbols: list[str]
    per_client: int
    warmup: float
    duration: float
    seed: int = 0
    slow_fraction: float = 0.0
    # Every client watches the same first `per_client` symbols (a default dashboard).
    same_symbols: bool = False
    # Seconds the clients stay connected (reading and dropping what comes) after the result.
    linger: float = 0.0
    # Name the symbols in the URL (`/ws?symbols=A,B`, which the app and bench/node-gateway both
    # take) instead of sending a `subscribe`; the client counts once `subscribed` arrives.
    url_symbols: bool = False
    # A client counts once its snapshot arrives (handshake, subscribe and snapshot all done).
    until_snapshot: bool = False
    connect_parallel: int = 256
    ready_timeout: float = 120.0
    storm_timeout: float = 40.0


@dataclass
class Stats:
    lat: list[int] = field(default_factory=lambda: [0] * LAT_SLOTS)
    quotes: int = 0
    frames: int = 0
    gaps: int = 0
    measuring: bool = False
    closes: Counter[int] = field(default_factory=Counter)
    slow_closes: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    subscribed: int = 0
    resubscribed_at: list[float] = field(default_factory=list)
    first_drain_notice: float | None = None


class Versions:
    """The newest (epoch, seq) seen per symbol, counting gaps."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[int, int]] = {}

    def check(self, stats: Stats, symbol: str, epoch: int, seq: int) -> None:
        last = self.seen.get(symbol)
        if last is not None and last[0] == epoch and seq > last[1] + 1 and stats.measuring:
            stats.gaps += seq - last[1] - 1
        if last is None or (epoch, seq) > last:
            self.seen[symbol] = (epoch, seq)


def record_quote(
    stats: Stats, versions: Versions, q: dict[str, Any], now_ms: int, measuring: bool
) -> None:
    versions.check(stats, q["symbol"], q["epoch"], q["seq"])
    if measuring:
        stats.lat[min(max(now_ms - q["published_at"], 0), LAT_SLOTS - 1)] += 1
        stats.quotes += 1


class Client(WSListener):
    def __init__(self, gen: Generator, index: int, symbols: list[str], slow: bool) -> None:
        self.gen, self.index, self.symbols, self.slow = gen, index, symbols, slow
        self.versions = Versions()
        self.subscribed = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.reconnect_ms: int | None = None
        self.transport: WSTransport | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        if self.symbols and not self.gen.spec.url_symbols:
            request = {"action": "subscribe", "symbols": self.symbols, "id": "b"}
            transport.send(WSMsgType.TEXT, orjson.dumps(request))
        elif not self.subscribed.done() and not self.gen.spec.until_snapshot:
            self.subscribed.set_result(None)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        stats = self.gen.stats
        if self.gen.lingering:
            return
        if frame.msg_type == WSMsgType.TEXT:
            payload = frame.get_payload_as_bytes()
            if payload.startswith(LIVE_FRAMES):
                # Stamp now, parse later: a tick's burst is parsed in small chunks between reads,
                # so one frame's parsing never delays the receipt time of the next.
                self.gen.backlog.append((time.time(), self.versions, payload, stats.measuring))
                return
            msg = orjson.loads(payload)
            kind = msg["type"]
            if kind == "snapshot":
                for q in msg["quotes"]:
                    self.versions.check(stats, q["symbol"], q["epoch"], q["seq"])
                if not self.subscribed.done():
                    self.subscribed.set_result(None)
            elif kind == "subscribed":
                # (It comes just before the snapshot: a client timed to its snapshot waits on.)
                if not self.subscribed.done() and not self.gen.spec.until_snapshot:
                    self.subscribed.set_result(None)
                    if self.slow:  # stop reading: the kernel buffers fill, then the server's
                        transport.underlying_transport.pause_reading()
            elif kind == "reconnect":
                self.reconnect_ms = int(msg.get("delay_ms", 0))
                if stats.first_drain_notice is None:
                    stats.first_drain_notice = time.monotonic()
                    # The storm is timed from here: so is the generator's own health.
                    self.gen.lags.clear()
        elif frame.msg_type == WSMsgType.CLOSE:
            code = frame.get_close_code()
            transport.send_close(code)
            transport.disconnect()
            if not self.closed.done():
                self.closed.set_result(int(code.value))

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.closed.done():
            self.closed.set_result(1006)


class Generator:
    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.stats = Stats()
        self.rng = random.Random(spec.seed)
        self.lags: list[float] = []
        self.sem = asyncio.Semaphore(spec.connect_parallel)
        self.backlog: deque[tuple[float, Versions, bytes, bool]] = deque()
        self.backlog_max = 0
        self.lingering = False  # measured and reported: frames are only taken off the socket

    async def digest(self) -> None:
        """Parse stamped live frames a chunk at a time, yielding to the socket reads between."""
        stats, backlog = self.stats, self.backlog
        while True:
            if not backlog:
                await asyncio.sleep(0.002)
                continue
            self.backlog_max = max(self.backlog_max, len(backlog))
            for _ in range(min(DIGEST_CHUNK, len(backlog))):
                received, versions, payload, measuring = backlog.popleft()
                now_ms = int(received * 1000)
                msg = orjson.loads(payload)
                if measuring:
                    stats.frames += 1
                if msg["type"] == "quote":
                    record_quote(stats, versions, msg["quote"], now_ms, measuring)
                else:
                    for q in msg["quotes"]:
                        record_quote(stats, versions, q, now_ms, measuring)
            await asyncio.sleep(0)

    async def drain_backlog(self, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while self.backlog and time.monotonic() < deadline:  # noqa: ASYNC110 (the digest empties it)
            await asyncio.sleep(0.01)

    def pick(self) -> list[str]:
        k = min(self.spec.per_client, len(self.spec.symbols))
        if self.spec.mode == "idle":
            return []
        if self.spec.same_symbols:
            return self.spec.symbols[:k]
        return self.rng.sample(self.spec.symbols, k)

    async def open(
        self, url: str, index: int, symbols: list[str], slow: bool, first: bool = True
    ) -> Client | None:
        local = (f"127.0.0.{2 + index % SOURCES}", 0)
        if self.spec.url_symbols and symbols:
            url += "?symbols=" + urlquote(",".join(symbols), safe=",")
        async with self.sem:
            try:
                _, client = await ws_connect(
                    lambda: Client(self, index, symbols, slow), url, local_addr=local
                )
                assert isinstance(client, Client)
                await asyncio.wait_for(asyncio.shield(client.subscribed), 30)
            except (OSError, TimeoutError, Exception) as exc:
                self.stats.errors[type(exc).__name__] += 1
                return None
        if first:
            self.stats.subscribed += 1
        return client

    async def session(self, index: int, slow: bool) -> None:
        """One client's life: connect, watch, and (storm) follow a 1012 to the next URL."""
        symbols = self.pick()
        urls = self.spec.urls
        client = await self.open(urls[0], index, symbols, slow)
        if client is None:
            return
        code = await client.closed
        (self.stats.slow_closes if slow else self.stats.closes)[code] += 1
        if self.spec.mode != "storm" or code != 1012:
            return
        delay = (client.reconnect_ms or self.rng.uniform(0, 5000)) / 1000
        await asyncio.sleep(delay)
        for attempt in range(10):
            again = await self.open(urls[1 % len(urls)], index, symbols, slow, first=False)
            if again is not None:
                self.stats.resubscribed_at.append(time.monotonic())
                await again.closed
                return
            await asyncio.sleep(min(0.2 * 2**attempt, 5) * self.rng.uniform(0.5, 1.5))

    async def lag_monitor(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(0.05)
            self.lags.append(time.perf_counter() - started - 0.05)

    async def run(self) -> dict[str, Any]:
        spec = self.spec
        monitor = asyncio.create_task(self.lag_monitor())
        digester = asyncio.create_task(self.digest())
        slow_every = int(1 / spec.slow_fraction) if spec.slow_fraction > 0 else 0
        sessions = [
            asyncio.create_task(self.session(i, bool(slow_every and i % slow_every == 0)))
            for i in range(spec.clients)
        ]
        connect_seconds = await self.ready_then_measure()
        cpu0, wall0 = time.process_time(), time.monotonic()
        if spec.mode == "storm":
            await self.wait_storm()
        else:
            await asyncio.sleep(spec.duration)
        self.stats.measuring = False
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        monitor.cancel()
        left = len(self.backlog)
        await self.drain_backlog()
        digester.cancel()
        result = self.summary(cpu, wall, connect_seconds)
        result["backlog_max"], result["backlog_at_end"] = self.backlog_max, left
        for task in sessions:
            task.cancel()
        return result

    async def ready_then_measure(self) -> float:
        """Wait until every client is subscribed (or failed), say `ready`, warm up, then start
        measuring; returns the seconds connecting took."""
        spec, stats = self.spec, self.stats
        started = time.monotonic()
        while stats.subscribed + sum(stats.errors.values()) < spec.clients:
            if time.monotonic() - started > spec.ready_timeout:
                break
            await asyncio.sleep(0.05)
        connect_seconds = time.monotonic() - started
        settle_gc()
        emit({"event": "ready", "subscribed": stats.subscribed})
        await asyncio.sleep(spec.warmup)
        self.lags.clear()
        stats.measuring = True
        return connect_seconds

    async def wait_storm(self) -> None:
        emit({"event": "storm-armed"})
        target = int(self.stats.subscribed * 0.99)
        deadline = time.monotonic() + self.spec.storm_timeout
        while time.monotonic() < deadline:
            if len(self.stats.resubscribed_at) >= max(target, 1):
                await asyncio.sleep(0.5)
                return
            await asyncio.sleep(0.05)

    def summary(self, cpu: float, wall: float, connect_seconds: float) -> dict[str, Any]:
        s = self.stats
        lags = sorted(self.lags) or [0.0]
        out: dict[str, Any] = {
            "event": "result",
            "lat_hist": {str(ms): n for ms, n in enumerate(s.lat) if n},
            "quotes": s.quotes,
            "frames": s.frames,
            "gaps": s.gaps,
            "seconds": round(wall, 3),
            "subscribed": s.subscribed,
            "connect_seconds": round(connect_seconds, 2),
            "closes": {str(k): v for k, v in s.closes.items()},
            "slow_closes": {str(k): v for k, v in s.slow_closes.items()},
            "errors": dict(s.errors),
            "gen_cpu": round(cpu / wall, 3) if wall else 0.0,
            "gen_lag_p99_ms": round(
                lags[int(len(lags) * 0.99) - 1 if len(lags) > 1 else 0] * 1e3, 1
            ),
            "gen_lag_max_ms": round(lags[-1] * 1e3, 1),
        }
        if s.first_drain_notice is not None and s.resubscribed_at:
            back = sorted(t - s.first_drain_notice for t in s.resubscribed_at)
            out["storm_back"] = len(back)
            out["storm_p50_s"] = round(back[len(back) // 2], 2)
            out["storm_p99_s"] = round(back[max(int(len(back) * 0.99) - 1, 0)], 2)
            out["storm_max_s"] = round(back[-1], 2)
        return out


class Poller:
    """A long-poll client over one keep-alive HTTP/1.1 connection (raw, to stay cheap)."""

    def __init__(self, gen: Generator, index: int) -> None:
        self.gen, self.index = gen, index
        self.symbols = gen.pick()
        self.versions = Versions()

    async def run(self, host: str, port: int) -> None:
        stats = self.gen.stats
        local = (f"127.0.0.{2 + self.index % SOURCES}", 0)
        async with self.gen.sem:
            reader, writer = await asyncio.open_connection(host, port, local_addr=local)
        stats.subscribed += 1
        cursor, first = "", True
        path = "/api/poll?symbols=" + urlquote(",".join(self.symbols), safe=",")
        while True:
            writer.write(f"GET {path}&cursor={cursor} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = orjson.loads(await reader.readexactly(length))
            now_ms = int(time.time() * 1000)
            cursor = body["cursor"]
            for q in body["quotes"]:
                if first:
                    self.versions.check(stats, q["symbol"], q["epoch"], q["seq"])
                else:
                    record_quote(stats, self.versions, q, now_ms, stats.measuring)
            if body["quotes"] and stats.measuring:
                stats.frames += 1
            first = False


async def run_pollers(gen: Generator) -> dict[str, Any]:
    spec = gen.spec
    host, port = spec.urls[0].split("//", 1)[1].split("/", 1)[0].split(":")
    monitor = asyncio.create_task(gen.lag_monitor())

    async def one(i: int) -> None:
        try:
            await Poller(gen, i).run(host, int(port))
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            gen.stats.errors[type(exc).__name__] += 1

    tasks = [asyncio.create_task(one(i)) for i in range(spec.clients)]
    connect_seconds = await gen.ready_then_measure()
    cpu0, wall0 = time.process_time(), time.monotonic()
    await asyncio.sleep(spec.duration)
    gen.stats.measuring = False
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    monitor.cancel()
    for task in tasks:
        task.cancel()
    return gen.summary(cpu, wall, connect_seconds)


def settle_gc() -> None:
    """Keep the collector from stalling the generator's own loop (and so its measurements): the
    clients are long-lived, so move them out of its reach, and collect young objects rarely."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 1000)


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def raise_fd_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def main(spec: Spec) -> None:
    gen = Generator(spec)
    result = await (run_pollers(gen) if spec.mode == "poll" else gen.run())
    emit(result)
    if spec.linger:
        gen.lingering = True
        await asyncio.sleep(spec.linger)


if __name__ == "__main__":
    raise_fd_limit()
    uvloop.run(main(Spec(**json.loads(sys.argv[1]))))
