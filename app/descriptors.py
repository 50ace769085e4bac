"""File descriptors: every connection holds one, and running out of them is silent.

When a process has no descriptor left, the event loop's accept fails: uvloop (libuv) then
accepts and drops pending connections, or stops its server, and nothing is logged; asyncio's
loop retries without saying why in terms an operator acts on. So the process raises its soft
`RLIMIT_NOFILE` to the hard limit at start, derives the default connection cap from it (leaving
room for Redis, provider calls, logs and the `/health` probe), and `FdWatch` checks once a
second that a descriptor can still be opened, logging exhaustion once, clearly, and recovery.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import resource

log = logging.getLogger(__name__)

# Descriptors kept out of the connection cap: Redis pools, HTTP clients, files, probes.
RESERVED = 128
DEFAULT_CAP = 32_768
MIN_CAP = 16


def raise_limit() -> int:
    """Raise the soft descriptor limit to the hard one; the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the descriptor limit from %d: %s", soft, exc)
    return soft


def connection_cap(configured: int, limit: int) -> int:
    """`configured`, never above what the descriptor limit allows; 0: `DEFAULT_CAP` if that
    fits (a hard limit of a million descriptors is common, and memory, ~20 KB a connection,
    runs out long before)."""
    room = max(limit - RESERVED, MIN_CAP)
    if configured and configured > room:
        log.warning(
            "MAX_CONNECTIONS=%d exceeds what %d descriptors allow; using %d",
            configured,
            limit,
            room,
        )
    return min(configured or DEFAULT_CAP, room)


class FdWatch:
    """Notices when no descriptor can be opened (see the module docstring)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self.exhausted = False

    def check(self) -> bool:
        """True while descriptors are exhausted; logs each change of state once."""
        try:
            os.close(os.open(os.devnull, os.O_RDONLY))
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE):
                raise
            if not self.exhausted:
                log.error(
                    "out of file descriptors (limit %d): new connections are being dropped "
                    "unanswered; raise `ulimit -n` or lower MAX_CONNECTIONS",
                    self._limit,
                )
            self.exhausted = True
            return True
        if self.exhausted:
            log.warning("file descriptors available again")
        self.exhausted = False
        return False

    async def run(self, every: float = 1.0) -> None:
        while True:
            self.check()
            await asyncio.sleep(every)
