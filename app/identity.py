"""Who this process is in the cluster, and a watch for another process claiming the same name.

`REPLICA_ID` names a replica for operators (logs, `/ready`, Redis keys), and an operator may give
two processes the same one by mistake. So each process also draws a random `nonce` at start:
the fetcher lease is held by `lease_holder(replica_id, nonce)`, so of two such processes exactly
one fetches, and heartbeats on `market-data:control` carry the nonce (`process`), so each
process tells its own heartbeat from a twin's and warns loudly about the twin.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping

import orjson

log = logging.getLogger(__name__)

# A twin that keeps beating is reported again this often (seconds).
WARN_EVERY = 60.0
# A twin silent for this long is forgotten (seconds).
FORGET_AFTER = 30.0


def new_nonce() -> str:
    """A random per-process tag: 48 bits, so two processes never draw the same one."""
    return secrets.token_hex(6)


def lease_holder(replica_id: str, nonce: str) -> str:
    """The fetcher lease's `holder`: unique per process even when replica ids clash."""
    return f"{replica_id}:{nonce}"


class TwinWatch:
    """Our heartbeat, and a check of every heartbeat that carries our replica id."""

    def __init__(
        self,
        replica_id: str,
        nonce: str | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.replica_id = replica_id
        self.nonce = nonce or new_nonce()
        self._clock = clock
        self._twins: dict[str, float] = {}  # nonce of another process with our id -> last heard
        self._warned: dict[str, float] = {}  # nonce -> when we last warned about it

    def heartbeat(self, fetcher: Mapping[str, object] | None = None) -> bytes:
        """The `market-data:control` heartbeat of this process; `fetcher` (what it says about
        its fetching while it holds the fetcher lease, see app.core.fetcher_watch) when given."""
        beat: dict[str, object] = {
            "type": "heartbeat", "replica": self.replica_id, "process": self.nonce,
        }  # fmt: skip
        if fetcher is not None:
            beat["fetcher"] = fetcher
        return orjson.dumps(beat)

    def is_own(self, event: Mapping[str, object]) -> bool:
        """Whether a heartbeat naming our replica id is this process's own. If another process
        sent it, log a loud warning (again every WARN_EVERY seconds while it keeps beating)."""
        process = event.get("process")
        if process == self.nonce:
            return True
        other = process if isinstance(process, str) else "?"
        now = self._clock()
        self.clashes()  # forget twins gone silent, so one that comes back is reported at once
        self._twins[other] = now
        if other not in self._warned or now - self._warned[other] >= WARN_EVERY:
            self._warned[other] = now
            log.warning(
                "REPLICA_ID CLASH: another process (%s) also runs as replica %r (we are %s). "
                "Give every process its own REPLICA_ID: only one of them can fetch, and their "
                "subscription reports overwrite each other's.",
                other, self.replica_id, self.nonce,
            )  # fmt: skip
        return False

    def clashes(self) -> dict[str, float]:
        """Other processes heard with our replica id lately: their nonce -> seconds since."""
        now = self._clock()
        for nonce, seen in list(self._twins.items()):
            if now - seen > FORGET_AFTER:
                del self._twins[nonce]
                self._warned.pop(nonce, None)
        return {nonce: now - seen for nonce, seen in self._twins.items()}
