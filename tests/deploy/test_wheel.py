"""The distribution runs outside the source tree: `python -m build` (sdist, then a wheel built from
the sdist), installed into a fresh venv in a temporary directory, started from there.

Slow (a venv and an install: about a minute, mostly pip), so it builds once per module.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app import launch
from tests.support import ROOT, free_port, wait_for

pytestmark = pytest.mark.deploy


def _run(args: list[str], cwd: Path, timeout: float = 300) -> str:
    done = subprocess.run(
        args, cwd=cwd, env=_clean_env(), capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment without anything that would let the checkout leak in."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, **extra}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A venv outside the checkout with the built wheel installed (the lock's versions)."""
    base = tmp_path_factory.mktemp("wheel")
    dist = base / "dist"
    _run([sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)], cwd=base)
    [wheel] = dist.glob("*.whl")
    env = base / "venv"
    venv.create(env, with_pip=True)
    pip = [str(env / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    _run([*pip, "--disable-pip-version-check", "-c", str(ROOT / "requirements.txt"), str(wheel)],
         cwd=base)  # fmt: skip
    yield env


def test_the_wheel_holds_templates_static_files_and_the_sample(installed: Path) -> None:
    where = _run(
        [str(installed / "bin" / "python"), "-c",
         "import app.resources as r; print(r.directory('templates')); print(r.sample_recording())"],
        cwd=installed.parent,
    ).split()  # fmt: skip
    assert all(str(installed) in path for path in where), where  # not the checkout's
    assert Path(where[1]).is_file()


class Served:
    def __init__(self, args: list[str], cwd: Path, env: dict[str, str], port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.log = cwd / f"app-{port}.log"
        self._out = self.log.open("wb")
        self.proc = subprocess.Popen(
            args, cwd=cwd, env=_clean_env(**env), stdout=self._out, stderr=subprocess.STDOUT
        )
        wait_for(self._up, 30, f"the installed app ({self.log})")

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"exited with {self.proc.returncode}:\n{self.log.read_text()}")
        try:
            return httpx.get(f"{self.base}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self._out.close()


def test_python_m_app_from_another_directory_serves_pages_static_files_and_the_replay(
    installed: Path,
) -> None:
    port = free_port()
    env = {"HOST": "127.0.0.1", "PORT": str(port), "FEEDS": "replay", "REPLAY_FILE": "sample",
           "REPLAY_SPEED": "50", "DRAIN_GRACE": "0"}  # fmt: skip
    server = Served([str(installed / "bin" / "python"), "-m", "app"], installed.parent, env, port)
    try:
        with httpx.Client(base_url=server.base, timeout=10) as http:
            for page in ("/", "/market", "/stock/TCS"):
                response = http.get(page)
                assert response.status_code == 200, (page, response.text[:300])
                assert "<html" in response.text
            css = http.get("/static/app.css")
            assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
            assert http.get("/static/js/connection.js").status_code == 200
            quotes = http.get("/api/quotes", params={"symbols": "TCS,AAPL"}).json()["quotes"]
            assert {q["symbol"] for q in quotes} == {"TCS", "AAPL"}
            assert {q["source"] for q in quotes} == {"replay"}
    finally:
        server.stop()


def test_the_bare_uvicorn_command_runs_from_another_directory(installed: Path) -> None:
    port = free_port()
    env = {"HOST": "127.0.0.1", "PORT": str(port), "DRAIN_GRACE": "0"}
    printed = _run(
        [str(installed / "bin" / "python"), "-m", "app", "--print-uvicorn-command"],
        cwd=installed.parent,
    )
    args = printed.split()
    assert args[:2] == ["uvicorn", launch.APP]
    args = [str(installed / "bin" / "uvicorn"), *args[1:]]
    args[args.index("--port") + 1] = str(port)
    server = Served(args, installed.parent, env, port)
    try:
        assert httpx.get(f"{server.base}/static/favicon.svg", timeout=10).status_code == 200
        assert httpx.get(f"{server.base}/stock/TCS", timeout=10).status_code == 200
    finally:
        server.stop()
