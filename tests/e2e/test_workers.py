"""WEB_CONCURRENCY as platforms set it: never a crash loop, never two truths.

With Redis, N workers are N replicas sharing one fetcher (test_deploy.py). Without Redis,
`python -m app` runs one process and says so once; the bare uvicorn CLI (which forks workers
before the app can decide) gets a one-line refusal and stops instead of respawning workers.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

import httpx

from tests.support import ROOT, AppServer, RedisServer, free_port, wait_for


def test_python_m_app_without_redis_ignores_web_concurrency_once_and_serves_one_truth() -> None:
    server = AppServer({"WEB_CONCURRENCY": "3", "REDIS_URL": "", "FETCH_INTERVL": "1"})
    server.start()
    try:
        # Every request reaches the same process, whose fetcher is the only one.
        replicas = {server.details()["replica"] for _ in range(20)}
        assert len(replicas) == 1
        # One fetcher: a symbol's seq only grows (two would interleave two sequences).
        seqs = [_seq(server) for _ in range(10)]
        assert seqs == sorted(seqs)
        log = server.log()
        assert log.count("WEB_CONCURRENCY=3 ignored: without REDIS_URL") == 1, log
        assert "Started parent process" not in log and log.count("Started server process") == 1
        assert log.count("FETCH_INTERVL is not a setting (did you mean FETCH_INTERVAL?)") == 1
    finally:
        server.stop()


def _seq(server: AppServer) -> int:
    quotes = httpx.get(f"{server.base}/api/quotes?symbols=TCS", timeout=5).json()["quotes"]
    return int(quotes[0]["seq"]) if quotes else 0


def bare_uvicorn(port: int) -> list[str]:
    """`python -m app --print-uvicorn-command`, run with this interpreter's uvicorn, without its
    pinned --workers (so that uvicorn reads WEB_CONCURRENCY itself, as a Procfile line would)."""
    env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1"}
    printed = subprocess.run(
        [sys.executable, "-m", "app", "--print-uvicorn-command"], cwd=ROOT, env=env,
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    args = shlex.split(printed)
    at = args.index("--workers")
    del args[at : at + 2]
    return [sys.executable, "-m", "uvicorn", *args[1:]]


def test_the_bare_uvicorn_cli_with_workers_and_no_redis_refuses_and_stops() -> None:
    port = free_port()
    env = {**os.environ, "WEB_CONCURRENCY": "2", "REDIS_URL": "", "PORT": str(port)}
    try:
        done = subprocess.run(
            bare_uvicorn(port), cwd=ROOT, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, timeout=60,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        out = (exc.output or b"").decode(errors="replace")
        raise AssertionError(f"uvicorn kept respawning its workers:\n{out}") from None
    out = done.stdout.decode(errors="replace")
    refusal = "uvicorn runs 2 workers but REDIS_URL is not set"
    assert 1 <= out.count(refusal) <= 2, out  # each worker once at most: no respawn
    assert "Traceback" not in out, out
    assert "failed to start, stopping the parent process" in out, out


def test_the_bare_uvicorn_cli_with_workers_and_redis_runs_replicas(
    redis_url: str, redis_server: RedisServer
) -> None:
    port = free_port()
    env = {**os.environ, "WEB_CONCURRENCY": "2", "REDIS_URL": redis_url, "PORT": str(port),
           "DRAIN_GRACE": "0", "LEASE_TTL": "1"}  # fmt: skip
    proc = subprocess.Popen(
        bare_uvicorn(port), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:

        def two_replicas() -> bool:
            ids = redis_server.cli("ZRANGE", "subscriptions:replicas", "0", "-1").split()
            return len(ids) == 2

        wait_for(two_replicas, 30, "both uvicorn workers registered as replicas")
        holder = redis_server.cli("HGET", "fetcher:lease", "holder").strip()
        assert holder  # one fetcher for both
    finally:
        proc.terminate()
        proc.wait(40)


def test_gunicorn_with_uvicorn_workers_refuses_once_per_worker_and_stops() -> None:
    # gunicorn's uvicorn worker would serve without the fast path and the HTTP request limits.
    port = free_port()
    env = {**os.environ, "REDIS_URL": "", "PORT": str(port)}
    command = [
        sys.executable, "-m", "gunicorn", "-k", "uvicorn.workers.UvicornWorker", "-w", "2",
        "-b", f"127.0.0.1:{port}", "app.main:app",
    ]  # fmt: skip
    try:
        done = subprocess.run(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            timeout=60,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        out = (exc.output or b"").decode(errors="replace")
        raise AssertionError(f"gunicorn kept respawning its workers:\n{out}") from None
    out = done.stdout.decode(errors="replace")
    assert done.returncode != 0, out
    assert 1 <= out.count("stocktracker: gunicorn is not supported") <= 2, out  # no respawn
    assert "Worker failed to boot" in out, out
