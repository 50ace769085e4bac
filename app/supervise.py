"""Background loops that never die silently.

`Supervisor.start(name, factory)` runs `factory()` in a task; if it ever returns or raises, the
failure is logged with its traceback, counted, and the loop is started again after a capped,
jittered backoff. `healthy(name)` is what readiness checks look at.

`aclose()` cancels every loop. A loop that outlives its cancellation would keep the process alive
for ever (asyncio.run waits for every task before it returns, so a replica that failed to start
or was told to stop never exits): past the grace, the process is made to exit anyway, loudly.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

RESTART_START = 0.5
RESTART_CAP = 30.0
# Seconds the rest of the shutdown gets after loops ignored cancellation, before a hard exit.
EXIT_DEADLINE = 5.0
EXIT_STUCK = 70  # EX_SOFTWARE: an internal error, not a clean stop


@dataclass(slots=True)
class LoopState:
    running: bool = False
    restarts: int = 0
    last_error: str | None = None
    last_failure_at: float | None = None


class Supervisor:
    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.states: dict[str, LoopState] = {}

    def start(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        if name in self._tasks:
            raise RuntimeError(f"loop {name!r} already started")
        self.states[name] = LoopState()
        self._tasks[name] = asyncio.create_task(self._run(name, factory), name=name)

    def healthy(self, name: str) -> bool:
        state = self.states.get(name)
        task = self._tasks.get(name)
        return state is not None and task is not None and not task.done() and state.running

    async def aclose(self, grace: float = 5.0) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=grace)
            for task in stuck:
                log.error("loop %s ignored cancellation for %.0fs", task.get_name(), grace)
            if stuck:
                exit_soon(sorted(task.get_name() for task in stuck))
        self._tasks.clear()

    async def _run(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        state = self.states[name]
        delay = RESTART_START
        while True:
            state.running = True
            started = time.monotonic()
            try:
                await factory()
                reraise_if_cancelling()
                state.last_error = "returned unexpectedly"
                log.error("loop %s returned; restarting", name)
            except asyncio.CancelledError:
                state.running = False
                raise
            except Exception as exc:
                state.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("loop %s crashed; restarting", name)
            state.running = False
            state.restarts += 1
            state.last_failure_at = time.monotonic()
            if time.monotonic() - started > RESTART_CAP:
                delay = RESTART_START
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, RESTART_CAP)


def exit_soon(stuck: list[str], deadline: float = EXIT_DEADLINE) -> None:
    """End the process `deadline` seconds from now unless it ends by itself first: `stuck` loops
    would otherwise keep it alive. Main thread only (the server's; a test client's app runs in
    another thread and must not end the test run)."""
    if threading.current_thread() is not threading.main_thread():
        return
    timer = threading.Timer(deadline, _hard_exit, args=(stuck,))
    timer.daemon = True  # never keeps the process alive itself
    timer.start()


def _hard_exit(stuck: list[str]) -> None:
    sys.stderr.write(f"stocktracker: exiting: loop(s) {', '.join(stuck)} ignored cancellation\n")
    sys.stderr.flush()
    os._exit(EXIT_STUCK)


def cancel_together(*tasks: asyncio.Task[Any]) -> None:
    """When any of `tasks` ends, cancel the others (use inside one TaskGroup)."""

    def cancel_all(_: asyncio.Task[Any]) -> None:
        for task in tasks:
            task.cancel()  # a no-op on the task that already ended

    for task in tasks:
        task.add_done_callback(cancel_all)


async def wait_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait for `event` at most `seconds`: True if it was set.

    Unlike a bare `asyncio.timeout` on Python 3.11, a cancellation that lands while the timeout
    fires is never turned into a TimeoutError and lost: long-lived loops stay cancellable.
    """
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
        return True
    except TimeoutError:
        reraise_if_cancelling()
        return False


def reraise_if_cancelling() -> None:
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
