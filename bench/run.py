"""The benchmark driver: start the real app pinned to one core, load it from the other, report.

    python -m bench.run                      # the default suite (`make bench`), a few minutes
    python -m bench.run tick --clients 19000 --duration 30
    python -m bench.run stream idle --env GC_TUNING=off

Each workload starts `python -m app` (the Procfile's uvicorn options) under `taskset -c 0` with
the simulated feed sized for it, runs `bench.loadgen` processes under `taskset -c 1`, samples the
server's CPU and RSS from /proc and its counters from /metrics, and appends one JSON line per run
to bench/results/<date>.jsonl, then prints a markdown table. A run is marked INVALID when the
generator was the bottleneck (its CPU near a full core, or its own event loop lagging), since the
latencies it measured would then be its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from app.feeds.universe import universe
from bench.report import PEERS, markdown, peers_markdown, percentiles

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
GEN_CPU_LIMIT = 0.9  # of one core
GEN_LAG_LIMIT_MS = 100.0
# A storm is timed in seconds (target 10 s), from the first drain notice: a generator whose loop
# lags this much there (2.5% of the target; 10,000 clients closing at once take it past 100 ms)
# still times it right.
STORM_GEN_LAG_LIMIT_MS = 250.0
ON_REQUEST = {"dashboard"}  # run only when named: not in the default suite
# Every series carries the process's replica label (app/metrics.py); one process here.
_REPLICA = re.compile(r',?replica="[^"]*"')
# After abusive clients leave, how long before the server's memory is compared with before.
ABUSE_SETTLE = 60.0


@dataclass
class Workload:
    name: str
    mode: str  # loadgen mode
    clients: int
    symbols: int = 100
    per_client: int = 10
    env: dict[str, str] = field(default_factory=dict)
    warmup: float = 4.0
    duration: float = 20.0
    slow_fraction: float = 0.0
    procs: int = 1
    target: str = ""
    same_symbols: bool = False
    # Abusive clients (bench.abuser) beside the measured ones, during the measured window; the
    # measured clients then stay `linger` seconds, while the server's memory is watched.
    abusers: int = 0
    abuse_kinds: tuple[str, ...] = ("big", "big-silent")
    linger: float = 0.0
    settle: float = ABUSE_SETTLE
    # Peers measured side by side on one Redis fed by a leader replica on core 1 (stream-redis):
    # "node" (bench/node-gateway, the seed's design) and "ours" (a replica that only fans out),
    # at each of `counts` clients (--clients picks one). Clients name their symbols in the URL.
    peers: tuple[str, ...] = ()
    counts: tuple[int, ...] = ()
    # Clients that connect as the measured window opens, beside the streaming ones (stream-join):
    # each counts once its snapshot arrives; the row gives how long all of them took.
    joiners: int = 0


def suite(scale: float) -> list[Workload]:
    """The default suite; `scale` shrinks client counts (the smoke test uses a tiny one)."""

    def n(count: int) -> int:
        return max(2, int(count * scale))

    # The generator's 64 source addresses each stand for hundreds of clients: the per-client
    # limits (app.clients) are lifted, except in the abuse workloads, which test them.
    many = {"CLIENT_HTTP_RATE": "0", "MAX_CONNECTIONS_PER_CLIENT": "1000000"}
    tick = {"FETCH_INTERVAL": "2", **many}
    stream = {"FETCH_INTERVAL": "0.05", "SIM_BATCH": "3"}
    return [
        Workload("tick", "ws", n(19_000), env=tick, target="p99<=500ms, 0 loss"),
        Workload(
            "dashboard",
            "ws",
            n(19_000),
            env=tick,
            same_symbols=True,
            target="tick, all on the same 10 symbols",
        ),  # fmt: skip
        Workload("stream", "ws", n(5_000), env={**stream, **many}, target="p99<=250ms, 0 loss"),
        Workload(
            "stream-redis",
            "ws",
            n(5_000),
            env={**stream, **many},
            peers=PEERS,
            counts=tuple(n(c) for c in (5_000, 10_000, 12_500, 15_000)),
            target="ours p99 <= Node's; <=10 us CPU/quote; p99<=100ms at 15,000",
        ),  # fmt: skip
        Workload(
            "stream-join",
            "ws",
            n(12_500),
            env={**stream, **many},
            peers=PEERS,
            counts=(n(12_500),),
            joiners=n(2_500),
            target="2,500 more connect (to their snapshot) within 5 s, none fails; p99 <= 2x",
        ),  # fmt: skip
        Workload(
            "long-poll",
            "poll",
            n(2_000),
            env=tick,
            target="p99<=500ms",
        ),  # fmt: skip
        Workload("idle", "idle", n(10_000), env=tick, duration=5, target="<=25KB/conn"),
        Workload(
            "slow-2%",
            "ws",
            n(5_000),
            env={**tick, "SEND_TIMEOUT": "10"},
            duration=60,
            slow_fraction=0.02,
            target="others p99<=500ms, RSS bounded",
        ),  # fmt: skip
        Workload("storm", "storm", n(10_000), env=tick, warmup=2, target="99% back <=10s"),
        Workload(
            "abuse-none",
            "ws",
            n(1_000),
            env=stream,
            target="the baseline of abuse",
        ),  # fmt: skip
        Workload(
            "abuse",
            "ws",
            n(1_000),
            env=stream,
            abusers=8,
            target="honest p99 <= 2x abuse-none; RSS back within 10% 60 s after",
        ),  # fmt: skip
        Workload(
            "abuse-mixed",
            "ws",
            n(1_000),
            env=stream,
            abusers=8,
            abuse_kinds=("big", "big-silent", "churn", "pages"),
            target="as abuse, with subscribe churn and page floods among the abusers",
        ),  # fmt: skip
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _raise_fd_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def pinned(core: int, argv: list[str]) -> list[str]:
    return (["taskset", "-c", str(core)] if shutil.which("taskset") else []) + argv


class Server:
    """A measured server process on a free port: its pid, CPU time and RSS from /proc."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.log = log
        self.env: dict[str, str] = {}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        raise NotImplementedError

    def _spawn(self, argv: list[str], env: dict[str, str], core: int) -> None:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            pinned(core, argv), env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            preexec_fn=_raise_fd_limit,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{argv[0]} exited with {self.proc.returncode}; see {self.log}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base}/ready", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{argv[0]} did not become ready; see {self.log}")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid  # taskset execs the program: same pid

    def rss(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def cpu_seconds(self) -> float:
        """User + system time of every thread of the process (GC and I/O threads included)."""
        return sum(self.cpu_split())

    def cpu_split(self) -> tuple[float, float]:
        """(user, system) seconds: the system share is the kernel's work on our behalf (on
        loopback, a send also runs the receiving socket's TCP input)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        return int(fields[11]) / tick, int(fields[12]) / tick

    def metrics(self) -> dict[str, float]:
        return {}

    def stop(self, sig: int = signal.SIGTERM, wait: float = 40) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(sig)
        try:
            self.proc.wait(wait)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


class App(Server):
    """`python -m app` pinned to `core` (0: the measured one), with its own fd limit raised."""

    def __init__(self, env: dict[str, str], log: Path, core: int = 0) -> None:
        super().__init__(log)
        self.core = core
        self.env = {
            **os.environ,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "LOG_LEVEL": "warning",
            "SIM_SEED": "1",
            "SIM_SESSIONS": "always",  # moving prices whatever the hour of the run
            "MAX_SYMBOLS_PER_CONNECTION": "50",
            **env,
        }

    def start(self) -> None:
        self._spawn([sys.executable, "-m", "app"], self.env, self.core)

    def details(self) -> dict[str, Any]:
        """The /ready body's details (open to anyone while ACCESS_TOKENS is unset)."""
        body: dict[str, Any] = httpx.get(f"{self.base}/ready", timeout=5).json()
        return dict(body.get("details") or {})

    def wait_role(self, role: str, within: float = 30) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                if self.details().get("role") == role:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"replica on port {self.port} never became {role}; see {self.log}")

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        with contextlib.suppress(httpx.HTTPError):
            text = httpx.get(f"{self.base}/metrics", timeout=30).text
            for line in _REPLICA.sub("", text).replace("{}", "").splitlines():
                if line.startswith("stocktracker_"):
                    name, value = line.rsplit(" ", 1)
                    if name.startswith("stocktracker_fanout_lag_seconds_bucket"):
                        out[name] = float(value)  # le="..." kept in the name
                    elif name.startswith("stocktracker_frames_sent_total"):
                        name = "stocktracker_frames_sent_total"  # fast + asgi
                    elif "{" in name:
                        continue
                    out[name] = out.get(name, 0.0) + float(value)
        return out


NODE_GATEWAY = ROOT / "bench" / "node-gateway"


def node_gateway_installed() -> None:
    """`npm ci` in bench/node-gateway when its node_modules is missing or older than the lock."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        raise RuntimeError(
            f"the stream-redis workload's Node peer needs {' and '.join(missing)} on PATH "
            "(Debian: apt-get install nodejs npm; `make test-deps` does it)"
        )
    marker = NODE_GATEWAY / "node_modules" / ".package-lock.json"
    lock = NODE_GATEWAY / "package-lock.json"
    if marker.exists() and marker.stat().st_mtime >= lock.stat().st_mtime:
        return
    print("# npm ci --prefix bench/node-gateway", file=sys.stderr, flush=True)
    done = subprocess.run(
        ["npm", "ci", "--prefix", str(NODE_GATEWAY), "--no-audit", "--no-fund"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"npm ci in {NODE_GATEWAY} failed:\n{done.stdout}\n{done.stderr}")


class NodeGateway(Server):
    """bench/node-gateway/gateway.js (the seed's design) pinned to core 0, like our replica."""

    def __init__(self, redis_url: str, log: Path) -> None:
        super().__init__(log)
        self.env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(self.port),
                    "REDIS_URL": redis_url}  # fmt: skip

    def start(self) -> None:
        self._spawn(["node", str(NODE_GATEWAY / "gateway.js")], self.env, 0)


@contextlib.contextmanager
def redis_server(core: int | None = None) -> Iterator[str]:
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--loglevel", "warning"]  # fmt: skip
    proc = subprocess.Popen(
        argv if core is None else pinned(core, argv),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                break
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError):
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "nproc": os.cpu_count(), "cpu": model, "mem_gb": round(mem_kb / 1024**2, 1),
        "python": sys.version.split()[0],
    }  # fmt: skip


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


async def client_process(module: str, spec: dict[str, Any]) -> asyncio.subprocess.Process:
    """A client-side process (`module` run with `spec`) on core 1, its JSON lines on stdout."""
    return await asyncio.create_subprocess_exec(
        *pinned(1, [sys.executable, "-m", module, json.dumps(spec)]),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )


async def drive(
    w: Workload, apps: list[Server], feeder: App | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run the generator processes; sample the first app during the measured window (and the
    quotes published by `feeder`, the leader replica, when the measured server is not it)."""
    symbols = list(universe(w.symbols))[: w.symbols]
    per_proc = [
        w.clients // w.procs + (1 if i < w.clients % w.procs else 0) for i in range(w.procs)
    ]
    procs = []
    for i, count in enumerate(per_proc):
        spec = {
            "mode": w.mode, "urls": [a.ws for a in apps], "clients": count,
            "symbols": symbols, "per_client": w.per_client, "warmup": w.warmup,
            "duration": w.duration, "seed": i, "slow_fraction": w.slow_fraction,
            "same_symbols": w.same_symbols, "linger": w.linger, "url_symbols": bool(w.peers),
        }  # fmt: skip
        procs.append(await client_process("bench.loadgen", spec))
    server: dict[str, Any] = {}

    async def events(proc: asyncio.subprocess.Process, out: dict[str, Any]) -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            event = json.loads(line)
            out[event["event"]] = event

    outs: list[dict[str, Any]] = [{} for _ in procs]
    readers = [asyncio.create_task(events(p, o)) for p, o in zip(procs, outs, strict=True)]
    # Polling a few dicts filled by the readers: simpler than an event per process and stage.
    while not all("ready" in o for o in outs) and not all(r.done() for r in readers):  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    await asyncio.sleep(w.warmup)
    app = apps[0]
    joining = asyncio.create_task(join(w, app, symbols)) if w.joiners else None
    before, cpu0, t0 = app.metrics(), app.cpu_seconds(), time.monotonic()
    sys0 = app.cpu_split()[1]
    fed_before = feeder.metrics() if feeder is not None else {}
    fed_at = time.monotonic()
    server["rss_start"] = app.rss()
    rss_peak = server["rss_start"]
    abusers = None
    if w.abusers:
        spec = {"url": app.ws, "clients": w.abusers, "duration": w.duration,
                "max_bytes": int(app.env.get("MAX_MESSAGE_BYTES", 65536)),
                "rate": float(app.env.get("CLIENT_RATE", 20)), "kinds": w.abuse_kinds,
                "symbols": symbols}  # fmt: skip
        abusers = await client_process("bench.abuser", spec)
    if w.mode == "storm":
        while not all("storm-armed" in o for o in outs):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        app.stop(wait=60)  # SIGTERM: the drain sends reconnect notices and 1012
        app = apps[1]
        before = app.metrics()
        cpu0 = app.cpu_seconds()
        sys0 = app.cpu_split()[1]
    while not all(r.done() for r in readers):
        with contextlib.suppress(OSError):
            rss_peak = max(rss_peak, app.rss())
        await asyncio.sleep(0.5)
        if all("result" in o for o in outs):
            break
    server["cpu"] = round((app.cpu_seconds() - cpu0) / (time.monotonic() - t0), 3)
    server["cpu_sys"] = round((app.cpu_split()[1] - sys0) / (time.monotonic() - t0), 3)
    server["rss_end"] = app.rss()
    server["rss_peak"] = rss_peak
    after = app.metrics()
    # A metrics read that failed (a replica too busy to answer in time) is {}: a counter read
    # against it would count from the process's start.
    unread = [
        name for name, sample in (("server's before", before), ("server's after", after))
        if isinstance(app, App) and not sample
    ]  # fmt: skip
    if feeder is not None:
        published = "stocktracker_quotes_published_total"
        fed_after = feeder.metrics()
        # The leader's rate over the time between its two reads: the second comes after the
        # generators' results, later than the window's end when one had a backlog to parse
        # (divided by the window alone, that read as up to 117 quotes/s "published").
        server["published_seconds"] = time.monotonic() - fed_at
        unread += [
            name for name, m in (("leader's before", fed_before), ("leader's after", fed_after))
            if not m
        ]  # fmt: skip
        before[published] = fed_before.get(published, 0.0)
        after[published] = fed_after.get(published, 0.0)
    for key in ("quotes_conflated_total", "slow_client_closes_total", "frames_sent_total",
                "quotes_received_total", "quotes_delivered_total",
                "quotes_published_total"):  # fmt: skip
        name = f"stocktracker_{key}"
        server[key] = after.get(name, 0) - before.get(name, 0)
    server["metrics_unread"] = unread
    server["loop_lag_s"] = after.get("stocktracker_event_loop_lag_seconds")
    server.update(server_lag(before, after))
    if abusers is not None:
        out, _ = await abusers.communicate()
        server["abusers"] = json.loads(out.decode().strip().splitlines()[-1])
        await asyncio.sleep(w.settle)  # the measured clients are still connected (linger)
        server["rss_settled"] = app.rss()
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            await asyncio.wait_for(proc.wait(), 30 + w.linger)
    if joining is not None:
        server["join"] = await joining
    return [o.get("result", {}) for o in outs], server


async def join(w: Workload, app: Server, symbols: list[str]) -> dict[str, Any]:
    """`w.joiners` more clients, as the measured window opens: how long until every one has its
    snapshot (timed by their generator from its first connect), and how many failed."""
    spec = {
        "mode": "ws", "urls": [app.ws], "clients": w.joiners, "symbols": symbols,
        "per_client": w.per_client, "warmup": 0, "duration": 1, "seed": 1000,
        "url_symbols": True, "until_snapshot": True, "ready_timeout": 60,
    }  # fmt: skip
    proc = await client_process("bench.loadgen", spec)
    out, _ = await proc.communicate()
    result = json.loads(out.decode().strip().splitlines()[-1])
    return {
        "joined": result.get("subscribed", 0),
        "join_s": result.get("connect_seconds"),
        "join_errors": result.get("errors", {}),
    }


def server_lag(before: dict[str, float], after: dict[str, float]) -> dict[str, str]:
    """The server's own publish -> frame-written quantiles, as histogram bucket bounds."""
    prefix = 'stocktracker_fanout_lag_seconds_bucket{le="'
    buckets = sorted(
        (float(k[len(prefix) : -2]), after[k] - before.get(k, 0.0))
        for k in after
        if k.startswith(prefix)
    )
    total = buckets[-1][1] if buckets else 0.0
    out: dict[str, str] = {}
    for name, q in (("server_lag_p50", 0.5), ("server_lag_p99", 0.99)):
        for bound, count in buckets:
            if total and count >= q * total:
                out[name] = f"<={bound * 1000:g}ms"
                break
    return out


def combine(w: Workload, results: list[dict[str, Any]], server: dict[str, Any],
            idle_rss: int) -> dict[str, Any]:  # fmt: skip
    hist: dict[int, int] = {}
    total = {"quotes": 0, "frames": 0, "gaps": 0, "subscribed": 0}
    closes: dict[str, int] = {}
    slow_closes: dict[str, int] = {}
    errors: dict[str, int] = {}
    seconds = max((r.get("seconds", 0.0) for r in results), default=0.0) or 1.0
    for r in results:
        for ms, count in r.get("lat_hist", {}).items():
            hist[int(ms)] = hist.get(int(ms), 0) + count
        for key in total:
            total[key] += r.get(key, 0)
        for src, dst in ((r.get("closes", {}), closes), (r.get("slow_closes", {}), slow_closes),
                         (r.get("errors", {}), errors)):  # fmt: skip
            for k, v in src.items():
                dst[k] = dst.get(k, 0) + v
    gen_cpu = max((r.get("gen_cpu", 0.0) for r in results), default=0.0)
    gen_lag = max((r.get("gen_lag_p99_ms", 0.0) for r in results), default=0.0)
    backlog = max((r.get("backlog_at_end", 0) for r in results), default=0)
    lag_limit = STORM_GEN_LAG_LIMIT_MS if w.mode == "storm" else GEN_LAG_LIMIT_MS
    invalid = [
        reason for reason, bad in (
            (f"generator CPU {gen_cpu:.0%}", gen_cpu * len(results) > GEN_CPU_LIMIT),
            (f"generator loop lag p99 {gen_lag:.0f} ms", gen_lag > lag_limit),
            ("no result from a generator", any(not r for r in results)),
            ("metrics unread: " + ", ".join(server.get("metrics_unread", [])),
             bool(server.get("metrics_unread"))),
        ) if bad
    ]  # fmt: skip
    row: dict[str, Any] = {
        "workload": w.name, "clients": w.clients, "connected": total["subscribed"],
        "symbols": w.symbols, "per_client": w.per_client, "env": w.env, "target": w.target,
        **percentiles(hist), "deliveries_per_s": round(total["quotes"] / seconds),
        "frames_per_s": round(total["frames"] / seconds), "gaps": total["gaps"],
        "published_per_s": round(
            server.get("quotes_published_total", 0) / server.get("published_seconds", seconds), 1
        ),
        "conflated": server.get("quotes_conflated_total", 0),
        "loss": max(0, total["gaps"] - int(server.get("quotes_conflated_total", 0))),
        "closes": closes, "slow_closes": slow_closes, "errors": errors,
        "server_cpu": server.get("cpu"), "server_cpu_sys": server.get("cpu_sys"),
        "server_rss_mb": round(server["rss_end"] / 2**20, 1),
        "server_rss_peak_mb": round(server["rss_peak"] / 2**20, 1),
        "server_loop_lag_s": server.get("loop_lag_s"),
        "server_lag_p50": server.get("server_lag_p50"),
        "server_lag_p99": server.get("server_lag_p99"),
        "gen_cpu": gen_cpu, "gen_lag_p99_ms": gen_lag, "gen_backlog_at_end": backlog,
        "seconds": seconds,
        "never_connected": max(0, w.clients - total["subscribed"]),
        "connect_s": max((r.get("connect_seconds", 0.0) for r in results), default=0.0),
        "valid": not invalid, "invalid_because": invalid,
    }  # fmt: skip
    if w.peers and row["deliveries_per_s"] and server.get("cpu") is not None:
        # CPU seconds of the measured process per quote delivered to a client, in microseconds.
        row["cpu_us_per_quote"] = round(server["cpu"] / row["deliveries_per_s"] * 1e6, 2)
        row["sys_us_per_quote"] = round(server["cpu_sys"] / row["deliveries_per_s"] * 1e6, 2)
    if (w.mode == "idle" or w.peers) and total["subscribed"]:
        row["rss_per_conn_kb"] = round(
            (server["rss_start"] - idle_rss) / total["subscribed"] / 1024, 1
        )
    if "join" in server:
        row.update(server["join"])
        row["join_failed"] = max(0, w.joiners - row["joined"])
        if (row["join_s"] or 0) > w.duration:
            # Joiners still connecting after the window: the window did not cover the join.
            row["invalid_because"].append("the joiners outlasted the measured window")
            row["valid"] = False
    if "rss_settled" in server:
        row["rss_baseline_mb"] = round(server["rss_start"] / 2**20, 1)
        row["rss_settled_mb"] = round(server["rss_settled"] / 2**20, 1)
        row["rss_settled_vs_baseline"] = round(server["rss_settled"] / server["rss_start"], 3)
        row["abusers"] = server["abusers"]
    if w.mode == "storm":
        for key in ("storm_back", "storm_p50_s", "storm_p99_s", "storm_max_s"):
            row[key] = max((r.get(key, 0) for r in results), default=0)
    return row


def run_workload(w: Workload, extra_env: dict[str, str], log: Path) -> dict[str, Any]:
    env = {"SIM_SYMBOLS": str(w.symbols), **w.env, **extra_env}
    started = time.time()
    load_before = load()
    with contextlib.ExitStack() as stack:
        apps: list[Server] = []
        if w.mode == "storm":
            url = stack.enter_context(redis_server())
            env = {**env, "REDIS_URL": url, "RECONNECT_SPREAD": "5", "DRAIN_GRACE": "0"}
            apps = [App(env, log), App(env, log)]
        else:
            apps = [App(env, log)]
        for app in apps:
            app.start()
            stack.callback(app.stop)
            print(f"# app pid {app.pid} on port {app.port}", file=sys.stderr, flush=True)
        idle_rss = apps[0].rss()
        results, server = asyncio.run(drive(w, apps))
    row = combine(w, results, server, idle_rss)
    row.update({
        "at": datetime.datetime.fromtimestamp(started, datetime.UTC).isoformat(timespec="seconds"),
        "load_before": load_before, "load_after": load(), "machine": machine(),
        "git": _git_rev(), "env": env,
    })  # fmt: skip
    return row


def run_peers(w: Workload, extra_env: dict[str, str], log: Path) -> list[dict[str, Any]]:
    """One row per peer at `w.clients`: a real redis-server and a leader replica (it holds the
    fetcher lease and prices all the symbols, watched or not, so both peers get the same feed)
    on core 1 with the generator; each peer in turn on core 0, fanning that Redis channel out."""
    if "node" in w.peers:
        node_gateway_installed()
    symbols = list(universe(w.symbols))[: w.symbols]
    env = {"SIM_SYMBOLS": str(w.symbols), **w.env, **extra_env,
           "BOARD_SYMBOLS": ",".join(symbols)}  # fmt: skip
    rows: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        env["REDIS_URL"] = stack.enter_context(redis_server(core=1))
        leader = App(env, log, core=1)
        leader.start()
        stack.callback(leader.stop)
        leader.wait_role("leader")
        print(f"# leader pid {leader.pid} on port {leader.port} (core 1)", file=sys.stderr,
              flush=True)  # fmt: skip
        for peer in w.peers:
            started, load_before = time.time(), load()
            server: Server = NodeGateway(env["REDIS_URL"], log) if peer == "node" else App(env, log)
            server.start()
            try:
                print(f"# {peer} pid {server.pid} on port {server.port} (core 0)",
                      file=sys.stderr, flush=True)  # fmt: skip
                idle_rss = server.rss()
                results, measured = asyncio.run(drive(w, [server], feeder=leader))
                role = server.details().get("role") if isinstance(server, App) else None
            finally:
                server.stop()
            row = combine(w, results, measured, idle_rss)
            row.update({
                "peer": peer, "measured_role": role,
                "at": datetime.datetime.fromtimestamp(started, datetime.UTC).isoformat(
                    timespec="seconds"),
                "load_before": load_before, "load_after": load(), "machine": machine(),
                "git": _git_rev(), "env": env,
            })  # fmt: skip
            if role not in (None, "follower"):
                row["valid"] = False
                row["invalid_because"].append(f"the measured replica became {role}")
            rows.append(row)
    return rows


def compare_with_baseline(row: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """The abuse run's honest p99 against the same workload without abusers (run just before)."""
    base = next((r for r in rows if r["workload"] == "abuse-none"), None)
    if base is not None and base.get("p99_ms") and row.get("p99_ms"):
        row["p99_vs_abuse_none"] = round(row["p99_ms"] / base["p99_ms"], 2)


def _git_rev() -> str:
    out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True, check=False)  # fmt: skip
    return out.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("workloads", nargs="*", help="names from the suite (default: all)")
    parser.add_argument("--clients", type=int, help="override the client count")
    parser.add_argument("--duration", type=float, help="measured seconds per run")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every client count")
    parser.add_argument("--warmup", type=float, help="seconds between ready and measuring")
    parser.add_argument("--procs", type=int, default=1, help="generator processes")
    parser.add_argument(
        "--settle", type=float, default=ABUSE_SETTLE,
        help="abuse: seconds after the abusers leave before memory is compared",
    )  # fmt: skip
    parser.add_argument("--env", action="append", default=[], help="NAME=value for the app")
    parser.add_argument("--label", default="", help="free text stored with the run")
    parser.add_argument("--peers", help="stream-redis: a comma-separated subset of node,ours")
    parser.add_argument("--out", type=Path, help="JSON-lines file to append to")
    args = parser.parse_args(argv)
    extra = dict(item.split("=", 1) for item in args.env)
    chosen = [
        w
        for w in suite(args.scale)
        if w.name in args.workloads or (not args.workloads and w.name not in ON_REQUEST)
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = args.out or RESULTS / f"{datetime.date.today().isoformat()}.jsonl"
    log = RESULTS / "server.log"
    rows: list[dict[str, Any]] = []
    command = " ".join(["python -m bench.run", *(argv if argv is not None else sys.argv[1:])])
    for w in chosen:
        if args.clients:
            w.clients = args.clients
            w.counts = (args.clients,)
        if args.duration:
            w.duration = args.duration
        if args.warmup is not None:
            w.warmup = args.warmup
        w.procs = args.procs
        if args.peers and w.peers:
            w.peers = tuple(p for p in w.peers if p in args.peers.split(","))
        if w.abusers:
            w.settle = args.settle
            w.linger = w.settle + 15  # the measured clients stay while memory settles
        for count in w.counts or (w.clients,):
            w.clients = count
            print(f"# {w.name}: {w.clients} clients, load {load()}", file=sys.stderr, flush=True)
            new = run_peers(w, extra, log) if w.peers else [run_workload(w, extra, log)]
            for row in new:
                row["label"] = args.label
                row["command"] = command
                if w.abusers:
                    compare_with_baseline(row, rows)
                rows.append(row)
                with out.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
    print(markdown(rows))
    side_by_side = peers_markdown(rows)
    if side_by_side:
        print("\n" + side_by_side)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
