"""The Dockerfile, built and run with podman: health check, non-root user, `$PORT`, SIGTERM.

`make test-container` (not part of `make test`). No container registry is reachable from the
test machine, so `python:3.11-slim` cannot be pulled: the test builds a stand-in base image with
the same interface (Debian bookworm, `python` 3.11 on PATH with venv, CA certificates) from
Debian packages with debootstrap, once per machine, and passes it as the Dockerfile's
`PYTHON_IMAGE` build argument. Everything after the `FROM` line is the Dockerfile as shipped.

podman runs as root here with runc, without cgroups-v2 and with the host's network (pip in the
build reaches the package index the way the host does, with the host's CA bundle mounted).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import ROOT, free_port, wait_for

pytestmark = pytest.mark.container

BASE = "localhost/stocktracker-base:py311-bookworm"
IMAGE = "localhost/stocktracker:test"
PODMAN = ["podman", "--runtime", "runc"]
LIMITS = ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]


def podman(*args: str, timeout: float = 600, check: bool = True) -> str:
    done = subprocess.run(
        [*PODMAN, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout.strip()


def _base_image() -> None:
    if _exists(BASE):
        return
    with tempfile.TemporaryDirectory(prefix="py311-rootfs-") as root:
        subprocess.run(
            ["debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
             "bookworm", root, "http://deb.debian.org/debian"],
            check=True, capture_output=True, timeout=900,
        )  # fmt: skip
        os.symlink("/usr/bin/python3", Path(root) / "usr/local/bin/python")
        with subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE) as tar:
            subprocess.run([*PODMAN, "import", "-", BASE], stdin=tar.stdout, check=True,
                           capture_output=True, timeout=600)  # fmt: skip


def _exists(image: str) -> bool:
    return subprocess.run([*PODMAN, "image", "exists", image], check=False).returncode == 0


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    for tool in ("podman", "runc", "debootstrap"):
        if shutil.which(tool) is None:
            raise AssertionError(f"{tool} is not installed: run `make test-container`")
    _base_image()
    podman(
        "build", "--format", "docker", "--network", "host", *LIMITS,
        "-v", "/etc/ssl/certs:/etc/ssl/certs:ro", "--build-arg", f"PYTHON_IMAGE={BASE}",
        "-t", IMAGE, str(ROOT), timeout=900,
    )  # fmt: skip
    yield IMAGE


def test_the_image_runs_as_non_root_answers_its_health_check_and_drains_on_sigterm(
    image: str,
) -> None:
    port = free_port()
    container = podman("run", "-d", "--network", "host", *LIMITS, "-e", f"PORT={port}", image)
    try:
        config = json.loads(podman("inspect", container))[0]["Config"]
        assert config["User"] == "app"
        assert config["Healthcheck"]["Test"] == ["CMD", "python", "-m", "app.healthcheck"]

        def up() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, 30, f"the container's app on port {port} ($PORT honoured)")
        assert podman("exec", container, "id", "-un") == "app"
        healthcheck = subprocess.run([*PODMAN, "healthcheck", "run", container], timeout=60)
        assert healthcheck.returncode == 0  # the image's HEALTHCHECK says healthy
        page = httpx.get(f"http://127.0.0.1:{port}/stock/TCS", timeout=10)
        assert page.status_code == 200 and "TCS" in page.text
        podman("stop", "--time", "30", container, timeout=60)
        state = json.loads(podman("inspect", container))[0]["State"]
        logs = subprocess.run(
            [*PODMAN, "logs", container], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, timeout=60, check=True,
        ).stdout  # fmt: skip
        assert state["ExitCode"] == 0, logs  # SIGTERM reached the app: it drained and exited
        assert "draining:" in logs and "Application shutdown complete" in logs
    finally:
        podman("rm", "--force", container, check=False)
