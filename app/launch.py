"""How the app is served: uvicorn's options in one place, and how many worker processes.

`python -m app` is the one way to start it: the Procfile, the Dockerfile, render.yaml and fly.toml
all run it, so the command line cannot drift between them. `plan()` turns the settings into
uvicorn's options; `uvicorn_command()` spells the same options as a `uvicorn` command line (`python
-m app --print-uvicorn-command`), for a platform that insists on one; a test parses that line with
uvicorn's own CLI and compares.

Workers (`WEB_CONCURRENCY`, which Heroku sets to 2 or more by itself): with `REDIS_URL`, each
worker is a replica and they share one fetcher and one truth. Without it, workers would share
nothing (each its own in-memory bus and simulated market: two prices for one symbol), so the app
runs as one process and says once that it ignores `WEB_CONCURRENCY`. Under the bare uvicorn CLI
the app cannot choose (uvicorn forks the workers before importing it), so there a worker without
Redis refuses with one line and uvicorn's start-up failure status, which makes uvicorn stop
instead of respawning it. gunicorn's uvicorn worker ignores our protocol classes (the fast path,
the HTTP limits) and is refused the same way.
"""

from __future__ import annotations

import logging
import multiprocessing
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.settings import GRACEFUL_SHUTDOWN, Settings

APP = "app.main:app"
HTTP_PROTOCOL = "app.http_limits:LimitedHttpProtocol"
WS_PROTOCOL = "app.ws.fastpath:FastProtocol"
# uvicorn's exit status for a failed start; its worker supervisor stops on it, gunicorn's on 3 too.
STARTUP_FAILURE = 3

# uvicorn.run keyword -> its CLI flag. Booleans with two flags: (flag if true, flag if false).
FLAGS: dict[str, str | tuple[str, str]] = {
    "host": "--host",
    "port": "--port",
    "workers": "--workers",
    "log_level": "--log-level",
    "http": "--http",
    "ws": "--ws",
    "ws_per_message_deflate": "--ws-per-message-deflate",
    "ws_max_size": "--ws-max-size",
    "timeout_graceful_shutdown": "--timeout-graceful-shutdown",
    "access_log": ("--access-log", "--no-access-log"),
    "proxy_headers": ("--proxy-headers", "--no-proxy-headers"),
    "forwarded_allow_ips": "--forwarded-allow-ips",
}


class Refused(Exception):
    """The app must not start this way; the message is the one line to print."""


@dataclass(frozen=True, slots=True)
class Plan:
    """uvicorn.run's keyword arguments (all but the app) and what to say once at start."""

    options: dict[str, Any]
    notices: tuple[tuple[int, str], ...] = field(default=())


def plan(
    settings: Settings,
    *,
    fast_path_missing: Sequence[str] = (),
    http_missing: Sequence[str] = (),
) -> Plan:
    """The serving plan; `*_missing` are what app.compat found absent from this uvicorn."""
    if http_missing:
        raise Refused(
            "this uvicorn lacks what app.http_limits builds on ("
            + ", ".join(http_missing)
            + "): install the versions in requirements.txt"
        )
    notices: list[tuple[int, str]] = []
    workers = settings.web_concurrency
    if workers > 1 and not settings.redis_url:
        notices.append((logging.WARNING, ignored_workers(workers)))
        workers = 1
    ws = WS_PROTOCOL if settings.ws_fast_path else "auto"
    if settings.ws_fast_path and fast_path_missing:
        notices.append((
            logging.ERROR,
            "WebSocket fast path off: this uvicorn lacks what app.ws.fastpath builds on ("
            + ", ".join(fast_path_missing)
            + "); serving /ws on uvicorn's plain ASGI path (install the versions in "
            "requirements.txt for the fast one)",
        ))  # fmt: skip
        ws = "auto"
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "workers": workers,
        "log_level": settings.log_level,
        "http": HTTP_PROTOCOL,
        "ws": ws,
        # Quote frames are small and many; deflate would cost ~90 KB of zlib state per connection.
        "ws_per_message_deflate": False,
        "ws_max_size": settings.max_message_bytes,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN,
        "access_log": False,
        "proxy_headers": True,
        "forwarded_allow_ips": settings.forwarded_allow_ips,
    }
    return Plan(options, tuple(notices))


def ignored_workers(workers: int) -> str:
    return (
        f"WEB_CONCURRENCY={workers} ignored: without REDIS_URL the app runs as one process "
        "(separate workers would each fetch and show their own prices); set REDIS_URL to run "
        f"{workers} workers that share one fetcher"
    )


def uvicorn_command(options: Mapping[str, Any]) -> list[str]:
    """The `uvicorn` command line equivalent to `options` (`--workers` always explicit, so that
    uvicorn does not read WEB_CONCURRENCY behind the app's back)."""
    args = ["uvicorn", APP]
    for key, value in options.items():
        flag = FLAGS[key]  # a KeyError here means an option without a CLI spelling: add it
        if isinstance(flag, tuple):
            args.append(flag[0] if value else flag[1])
        elif isinstance(value, bool):
            args += [flag, "true" if value else "false"]
        else:
            args += [flag, str(value)]
    return args


def check_worker_process(settings: Settings, argv: Sequence[str] | None = None) -> None:
    """Refuse to be one of several worker processes that would not share state, or a gunicorn
    worker (which drops our protocol options). Called when uvicorn imports `app.main:app`."""
    if "gunicorn" in sys.modules:
        raise Refused(
            "gunicorn is not supported: its uvicorn worker drops the app's protocol options "
            "(WebSocket fast path, HTTP request limits); run `python -m app` (WEB_CONCURRENCY "
            "sets the workers)"
        )
    if settings.redis_url or multiprocessing.parent_process() is None:
        return  # shared state through Redis, or a single process
    workers = cli_workers(sys.argv if argv is None else argv, settings.web_concurrency)
    if workers > 1:
        raise Refused(
            f"uvicorn runs {workers} workers but REDIS_URL is not set: each would fetch and show "
            "its own prices. Set REDIS_URL, or start with `python -m app`, which then runs one "
            "process"
        )


def cli_workers(argv: Sequence[str], web_concurrency: int) -> int:
    """How many workers the uvicorn command line in `argv` asked for (`--workers`, else
    WEB_CONCURRENCY, as uvicorn's CLI reads them); 1 when `argv` is not a uvicorn command line."""
    program = argv[0].replace("\\", "/") if argv else ""
    if not (program.endswith("/uvicorn") or program == "uvicorn" or "/uvicorn/" in program):
        return 1
    from uvicorn.main import main as uvicorn_cli

    try:
        context = uvicorn_cli.make_context("uvicorn", list(argv[1:]), resilient_parsing=True)
    except Exception:  # not ours to judge: uvicorn parsed it already
        return 1
    workers = context.params.get("workers")
    return workers if isinstance(workers, int) else web_concurrency
