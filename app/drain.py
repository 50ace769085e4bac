"""Graceful drain on SIGTERM, for a platform that gives a replica ~30 s to go away.

In order: readiness fails at once (the load balancer stops sending new users), the replica stops
fetching and hands the fetcher lease over, new WebSocket upgrades get 503, every client gets a
`reconnect` notice with its own random delay and then close 1012, in-flight long-polls are answered
at once. When no client is left (or `DRAIN_TIMEOUT` passes), and at least `DRAIN_GRACE` seconds
after the signal (time for the load balancer to see the failed readiness and stop routing here),
uvicorn is told to exit normally, so the process exits 0 after the usual lifespan shutdown. A
second SIGTERM exits at once.

uvicorn handles SIGTERM itself by closing every WebSocket with 1012 straight away and, after
shutdown, re-raising the signal (exit status 143); this handler takes SIGTERM over from inside
the running server, so it works the same under `uvicorn app.main:app` and `python -m app`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from app.core.hub import Hub
from app.fetcher import Fetcher

log = logging.getLogger(__name__)

Handler = Callable[[int, FrameType | None], Any] | int | None


class Drainer:
    def __init__(
        self, hub: Hub, fetcher: Fetcher, *, timeout: float, spread: float, grace: float
    ) -> None:
        self._hub = hub
        self._grace = grace
        self._fetcher = fetcher
        self._timeout = timeout
        self._spread = spread
        self._previous: Handler = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    def install(self) -> None:
        """Take SIGTERM over (main thread only; elsewhere, e.g. in tests, do nothing)."""
        if threading.current_thread() is not threading.main_thread():
            return
        self._loop = asyncio.get_running_loop()
        self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)

    def uninstall(self) -> None:
        if self._loop is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._previous or signal.SIG_DFL)

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        if self._task is not None:  # a second SIGTERM: stop waiting
            self._exit_server(signum, frame)
            return
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._start)

    def _start(self) -> None:
        self._task = asyncio.create_task(self.drain(), name="drain")

    async def drain(self) -> None:
        hub = self._hub
        log.info(
            "draining: %d connection(s), %d long-poll(s) in flight",
            hub.connections,
            hub.polls_in_flight,
        )
        started = time.monotonic()
        hub.start_drain(self._spread)
        self._fetcher.draining = True
        await self._fetcher.release()
        try:
            async with asyncio.timeout(self._timeout):
                await hub.wait_empty()
            log.info("drained in %.1fs", time.monotonic() - started)
        except TimeoutError:
            log.warning("drain timeout: %d client(s) still connected", hub.connections)
        # New users may still arrive until the load balancer notices: answer them (503 upgrades,
        # immediate long-polls) for the grace period instead of refusing connections.
        await asyncio.sleep(max(0.0, self._grace - (time.monotonic() - started)))
        log.info("shutting down")
        self._exit_server(signal.SIGTERM, None)

    def _exit_server(self, signum: int, frame: FrameType | None) -> None:
        server = getattr(self._previous, "__self__", None)
        if server is not None and hasattr(server, "should_exit"):
            # uvicorn's Server: a normal shutdown, without re-raising the signal afterwards.
            server.should_exit = True
        elif callable(self._previous):
            self._previous(signum, frame)
        else:
            raise SystemExit(0)
