"""A replica that cannot start exits at once, non-zero, with one clear line: never a process
that logs "Application shutdown complete" and then lives on (a load balancer or platform sees a
process, not a failure)."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.supervise import EXIT_STUCK
from tests.support import ROOT, free_port

# Generous for a loaded 2-core machine; a process that does not exit at all is the bug.
DEADLINE = 20.0


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port somebody else already listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def run(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run `args` from the repository root; its exit code and output, or fail at the deadline."""
    try:
        done = subprocess.run(
            args, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, timeout=DEADLINE,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        out = (exc.output or b"").decode(errors="replace")
        raise AssertionError(f"still running after {DEADLINE}s:\n{out}") from None
    return done.returncode, done.stdout.decode(errors="replace")


def procfile_command(port: int) -> list[str]:
    """The Procfile's `web:` command line (`VAR=value ... python -m app`), run with this
    interpreter; and, for a platform that wants a bare uvicorn line, the equivalent one that
    `python -m app --print-uvicorn-command` prints (app/launch.py), with this interpreter's uvicorn.
    """
    line = next(
        line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("web:")
    )
    args = shlex.split(line.removeprefix("web:"))
    env = {**os.environ, "PORT": str(port)}
    while "=" in args[0]:
        name, _, value = args.pop(0).partition("=")
        env[name] = value
    assert args == ["python", "-m", "app"]
    printed = subprocess.run(
        [sys.executable, "-m", "app", "--print-uvicorn-command"], cwd=ROOT, env=env,
        capture_output=True, text=True, check=True, timeout=DEADLINE,
    ).stdout  # fmt: skip
    uvicorn = shlex.split(printed)
    assert uvicorn[0] == "uvicorn" and uvicorn[uvicorn.index("--host") + 1] == "0.0.0.0"
    return [sys.executable, "-m", "uvicorn", *uvicorn[1:]]


def assert_failed_clearly(code: int, out: str) -> None:
    assert code != 0, out
    assert "address already in use" in out, out
    assert "Traceback" not in out, out
    assert "ignored cancellation" not in out, out  # every loop stopped when told to


@pytest.mark.parametrize("bus", ["memory", "redis"])
def test_a_port_in_use_stops_python_m_app(
    bus: str, taken_port: int, request: pytest.FixtureRequest
) -> None:
    env = {"HOST": "127.0.0.1", "PORT": str(taken_port), "REDIS_URL": ""}
    if bus == "redis":
        env["REDIS_URL"] = request.getfixturevalue("redis_url")
    assert_failed_clearly(*run([sys.executable, "-m", "app"], env))


def test_a_port_in_use_stops_the_procfile_command(redis_url: str) -> None:
    # The Procfile binds 0.0.0.0, which the loopback listener above does not block on Linux:
    # take the port on every interface for this one.
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        sock.listen()
        port = sock.getsockname()[1]
        code, out = run(procfile_command(port), {"REDIS_URL": redis_url})
    assert_failed_clearly(code, out)


def test_loops_that_ignore_cancellation_cannot_keep_the_process_alive() -> None:
    # asyncio.run waits for every task before it returns: a loop that swallows its cancellation
    # would keep a stopped (or never started) replica alive for ever.
    script = """
import asyncio
from app.supervise import Supervisor

async def stubborn() -> None:
    while True:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            pass

async def main() -> None:
    supervisor = Supervisor()
    supervisor.start("stubborn", stubborn)
    await asyncio.sleep(0.1)
    await supervisor.aclose(grace=0.5)

asyncio.run(main())
"""
    code, out = run([sys.executable, "-c", script], {})
    assert code == EXIT_STUCK, out
    assert "loop(s) stubborn ignored cancellation" in out, out


def test_a_failing_lifespan_stops_the_process(tmp_path: Path, redis_url: str) -> None:
    recording = tmp_path / "broken.jsonl"
    recording.write_text("not json\n")
    env = {"PORT": str(free_port()), "REDIS_URL": redis_url, "FEEDS": "replay",
           "REPLAY_FILE": str(recording)}  # fmt: skip
    code, out = run([sys.executable, "-m", "app"], env)
    assert code != 0, out
    assert "broken.jsonl:1: not JSON" in out, out
    assert "Application startup failed. Exiting." in out, out
