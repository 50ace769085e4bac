"""In-process adapters: the whole cluster is this one process.

Used by `make run` without Redis and by unit tests. Same semantics as Redis where it matters:
at-most-once delivery to listeners present at publish time, per-replica leases that expire, a
history capped per symbol whose idle symbols expire. One more bound than Redis: the history
keeps at most `max_symbols` symbols (the least recently appended goes first), since this
process's memory is all there is.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence

from app.pubsub.base import LeaseHolder, Message, StateCallback

log = logging.getLogger(__name__)

# A listener that falls this far behind loses the oldest messages rather than growing memory.
LISTENER_BACKLOG = 10_000


class MemoryBus:
    def __init__(self) -> None:
        self._listeners: dict[str, set[asyncio.Queue[Message]]] = {}
        self.dropped = 0

    async def publish(self, channel: str, data: bytes) -> None:
        message = Message(channel, bytes(data))
        for queue in self._listeners.get(channel, ()):
            if queue.full():
                queue.get_nowait()
                self.dropped += 1
                log.warning("memory bus listener lagging on %s: dropped oldest message", channel)
            queue.put_nowait(message)

    async def listen(
        self, channels: Sequence[str], on_state: StateCallback | None = None
    ) -> AsyncGenerator[Message, None]:
        queue: asyncio.Queue[Message] = asyncio.Queue(LISTENER_BACKLOG)
        for channel in channels:
            self._listeners.setdefault(channel, set()).add(queue)
        try:
            if on_state is not None:
                on_state(True)
            while True:
                yield await queue.get()
        finally:
            for channel in channels:
                self._listeners.get(channel, set()).discard(queue)

    async def ping(self) -> bool:
        return True


class MemorySnapshotStore:
    def __init__(self) -> None:
        self._items: dict[str, bytes] = {}

    async def put(self, items: Mapping[str, bytes]) -> None:
        self._items.update(items)

    async def get(self, symbols: Sequence[str]) -> dict[str, bytes]:
        return {s: self._items[s] for s in symbols if s in self._items}

    async def get_all(self) -> dict[str, bytes]:
        return dict(self._items)

    def covers(self, symbol: str) -> bool:
        return True


class MemoryHistoryStore:
    def __init__(
        self,
        points: int,
        ttl: float,
        *,
        max_symbols: int = 500,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._points = points
        self._ttl = ttl
        self._max_symbols = max_symbols
        self._clock = clock
        # symbol -> (expires at, entries); ordered by last append, so also by expiry.
        self._lines: OrderedDict[str, tuple[float, deque[bytes]]] = OrderedDict()

    def append(self, items: Mapping[str, bytes]) -> None:
        now = self._clock()
        for symbol, entry in items.items():
            found = self._lines.pop(symbol, None)
            line = found[1] if found is not None and found[0] > now else deque(maxlen=self._points)
            line.append(bytes(entry))
            self._lines[symbol] = (now + self._ttl, line)
        while self._lines:
            oldest, (expires, _) = next(iter(self._lines.items()))
            if len(self._lines) <= self._max_symbols and expires > now:
                break
            del self._lines[oldest]

    async def read(self, symbol: str) -> list[bytes]:
        found = self._lines.get(symbol)
        if found is None or found[0] <= self._clock():
            return []
        return list(found[1])

    async def sample(self, symbols: Sequence[str], points: int) -> list[list[bytes]]:
        if points < 2:
            raise ValueError(f"a sample needs at least 2 points, not {points}")
        now = self._clock()
        sampled: list[list[bytes]] = []
        for symbol in symbols:
            found = self._lines.get(symbol)
            line = found[1] if found is not None and found[0] > now else deque[bytes]()
            n = len(line)
            if n <= points:
                sampled.append(list(line))
            else:  # the same positions as the Redis store's script picks
                sampled.append([line[i * (n - 1) // (points - 1)] for i in range(points)])
        return sampled


class MemoryLease:
    """One process is the whole cluster: it always holds the lease, in one term per start."""

    def __init__(
        self, bus: MemoryBus, snapshots: MemorySnapshotStore, history: MemoryHistoryStore
    ) -> None:
        self._bus = bus
        self._snapshots = snapshots
        self._history = history
        self._holder: str | None = None
        self._token = 0

    async def acquire(self, holder: str) -> int | None:
        if self._holder not in (None, holder):
            return None
        if self._holder is None:
            self._holder = holder
            self._token = max(int(time.time() * 1000), self._token + 1)
        return self._token

    async def release(self, holder: str, token: int) -> None:
        if (self._holder, self._token) == (holder, token):
            self._holder = None

    async def peek(self) -> LeaseHolder | None:
        return None if self._holder is None else LeaseHolder(self._holder, self._token)

    async def publish(
        self,
        token: int,
        snapshots: Mapping[str, bytes],
        channel: str,
        message: bytes,
        history: Mapping[str, bytes] | None = None,
    ) -> bool:
        if self._holder is None or token != self._token:
            return False
        await self._snapshots.put(snapshots)
        self._history.append(history or {})
        await self._bus.publish(channel, message)
        return True


class MemoryRegistry:
    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        self._replicas: dict[str, tuple[float, dict[str, int]]] = {}

    async def report(self, replica_id: str, counts: Mapping[str, int]) -> None:
        live = {s: n for s, n in counts.items() if n > 0}
        self._replicas[replica_id] = (self._clock() + self._ttl, live)

    async def withdraw(self, replica_id: str) -> None:
        self._replicas.pop(replica_id, None)

    async def reconcile(self) -> dict[str, int]:
        now = self._clock()
        totals: dict[str, int] = {}
        for replica_id, (expires, counts) in list(self._replicas.items()):
            if expires <= now:
                del self._replicas[replica_id]
                continue
            for symbol, n in counts.items():
                totals[symbol] = totals.get(symbol, 0) + n
        return totals
