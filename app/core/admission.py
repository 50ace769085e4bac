"""Fair admission of symbols nobody has priced yet: no client can starve another's.

With a real provider every never-priced symbol costs quota whether it is real or junk, so the
fetcher asks about at most `NEW_SYMBOLS_PER_MINUTE` of them (app.fetcher). Before this, it took
them in alphabetical order from the cluster's subscriptions: one client subscribed to 200
made-up symbols (`0000`..`0199`) kept another user's real symbol from ever being priced.

So a replica reports such a symbol to the subscription registry (which is what makes the
fetcher ask about it) only once it has admitted it for one of the clients that want it:

- Admissions come from this replica's share of the fetcher's budget (`per_minute` divided by
  the live replicas), so admitted symbols do not queue up at the fetcher.
- Each client may have at most `per_client` admitted symbols that have no price yet; what it
  wants beyond that waits, in the order it asked.
- Tokens go to waiting clients in turn: first those admitted nothing in the last hour, then the
  one whose last admission is oldest. While the bucket can hold two tokens, the last one is kept
  for such a newcomer, so its symbol is admitted at once while the junk clients of one address
  use up the rest; junk from many addresses can take every token, and a newcomer is then first
  for the next one.
- An admission outlives its watchers by `linger` seconds (and counts against its client's
  room meanwhile), so a long-poll client, which watches only while each poll waits, does not
  pay again for every poll. When the client it was made for leaves, another client that wants
  the symbol inherits it.

Every operation costs what the clients and symbols it touches cost, never a walk over all
clients: waiting clients are taken from a heap, expiries from another.

Clients are told apart by address (`client_key`; an IPv6 client by its /64, which one client
usually holds). Behind a proxy trusted with `FORWARDED_ALLOW_IPS=*`, the address is whatever the
client put first in `X-Forwarded-For`, so the fairness is then per claimed address. Symbols
with a price need no admission; feeds that know their symbols (simulated, replay) refuse junk at
subscribe time and need none at all (`enabled` off).
"""

from __future__ import annotations

import functools
import heapq
import ipaddress
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

# A client admitted something within this many seconds is no newcomer. Admissions are rate
# limited, so remembering them this long costs at most `per_minute` x 60 small entries.
REMEMBER = 3600.0
NEVER = float("-inf")


@functools.lru_cache(maxsize=4096)  # every connection asks; the same few addresses, mostly
def client_key(host: str | None) -> str:
    """The client a connection or request comes from: its address, an IPv6 one as its /64."""
    if not host:
        return "?"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host  # a unix socket path or a test client's name
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


@dataclass(slots=True)
class _Client:
    since: float  # when it began waiting for what it waits for now
    # Never-priced symbols it wants, in the order it first asked: symbol -> its watchers.
    wants: dict[str, int] = field(default_factory=dict)
    admitted: set[str] = field(default_factory=set)  # for it; lingering ones included
    lingering: dict[str, float] = field(default_factory=dict)  # symbol -> admitted until
    last: float = NEVER  # when it was last admitted something
    queued: int = 0  # the version of its entry in the waiting heap; 0: not queued


class Admission:
    def __init__(
        self,
        per_minute: float,
        per_client: int,
        *,
        linger: float = 0.0,
        always: Iterable[str] = (),
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.enabled = enabled
        self._always = frozenset(always)  # fetched whether watched or not (the board)
        self._per_minute = per_minute
        self._rate = per_minute / 60.0
        self._burst = max(per_minute, 1.0)
        # One token to start with: a replica that just started does not know yet how many share
        # the fetcher's budget, and must not spend all of it.
        self._tokens = 1.0
        self._room = max(per_client, 1)
        self._linger = linger
        self._clock = clock
        self._stamp = clock()
        self._clients: dict[str, _Client] = {}
        self._wanted_by: dict[str, set[str]] = {}  # symbol -> clients that want it
        self._holder: dict[str, str] = {}  # admitted symbol -> the client it is admitted for
        self._waiting: list[tuple[float, float, int, str]] = []  # (last, since, version, key)
        self._expiries: list[tuple[float, str, str]] = []  # (until, client, symbol)
        self._version = 0

    def share(self, replicas: int) -> None:
        """This replica is one of `replicas` live ones: its share of the fetcher's budget."""
        per_minute = self._per_minute / max(replicas, 1)
        self._rate = per_minute / 60.0
        self._burst = max(per_minute, 1.0)
        self._tokens = min(self._tokens, self._burst)

    # ---- what watchers want ----------------------------------------------------------------

    def want(self, client: str, symbols: Iterable[str]) -> None:
        """A watcher at `client` wants `symbols`, none of which has a price yet."""
        if not self.enabled:
            return
        entry = self._clients.get(client)
        if entry is None:
            entry = self._clients[client] = _Client(since=self._clock())
        for symbol in symbols:
            if symbol in self._always:
                continue
            if not entry.wants:
                entry.since = self._clock()
            entry.wants[symbol] = entry.wants.get(symbol, 0) + 1
            self._wanted_by.setdefault(symbol, set()).add(client)
            entry.lingering.pop(symbol, None)  # wanted again: its admission holds once more
        self._queue(client, entry)
        self._allocate()

    def unwant(self, client: str, symbols: Iterable[str]) -> None:
        """A watcher at `client` no longer wants `symbols` (it left, or unsubscribed)."""
        entry = self._clients.get(client)
        if entry is None:
            return
        now = self._clock()
        for symbol in symbols:
            left = entry.wants.get(symbol, 0) - 1
            if left > 0:
                entry.wants[symbol] = left
                continue
            if entry.wants.pop(symbol, None) is None:
                continue  # it got a price meanwhile (see `settled`)
            self._unindex(symbol, client)
            if symbol in entry.admitted:
                until = now + self._linger
                entry.lingering[symbol] = until
                heapq.heappush(self._expiries, (until, client, symbol))
        self._expire(now)
        self._forget_if_idle(client, entry)

    def settled(self, symbols: Iterable[str]) -> None:
        """`symbols` got a price or were rejected: they need no admission any more."""
        touched: set[str] = set()
        for symbol in symbols:
            for client in self._wanted_by.pop(symbol, ()):
                self._clients[client].wants.pop(symbol, None)
                touched.add(client)
            holder = self._holder.pop(symbol, None)
            if holder is not None:
                entry = self._clients[holder]
                entry.admitted.discard(symbol)
                entry.lingering.pop(symbol, None)
                touched.add(holder)
        for client in touched:
            entry = self._clients[client]
            self._queue(client, entry)  # room again for what it waits for
            self._forget_if_idle(client, entry)
        self._allocate()

    # ---- what the report asks --------------------------------------------------------------

    def admitted(self, symbol: str) -> bool:
        return not self.enabled or symbol in self._holder or symbol in self._always

    def demand(self, symbol: str) -> int:
        """How many clients want `symbol` (at least 1 while it is admitted): what a replica
        reports for a never-priced symbol, so opening connections buys no priority."""
        return max(len(self._wanted_by.get(symbol, ())), 1)

    def refill(self) -> None:
        """Let lingering admissions lapse and admit what the refilled budget allows."""
        self._expire(self._clock())
        self._allocate()

    @property
    def clients(self) -> int:
        return len(self._clients)

    # ---- bookkeeping -----------------------------------------------------------------------

    def _allocate(self) -> None:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        # Keep the last token for a newcomer, unless the bucket cannot even hold two (a small
        # share of the budget would then never be spent).
        reserve = 1.0 if self._burst >= 2 else 0.0
        waiting = self._waiting
        while self._tokens >= 1 and waiting:
            last, _, version, key = waiting[0]
            entry = self._clients.get(key)
            if entry is None or entry.queued != version:
                heapq.heappop(waiting)  # stale: served or requeued since
                continue
            if now - last < REMEMBER and self._tokens < 1 + reserve:
                return  # only newcomers may take the last token
            symbol = self._next_for(entry)
            heapq.heappop(waiting)
            entry.queued = 0
            if symbol is None:
                continue  # no room, or nothing to admit: queued again when that changes
            self._tokens -= 1
            entry.admitted.add(symbol)
            entry.last = now
            entry.since = now
            self._holder[symbol] = key
            self._queue(key, entry)

    def _next_for(self, entry: _Client) -> str | None:
        """The first symbol `entry` waits for, if it has room for one more."""
        if len(entry.admitted) >= self._room:
            return None
        for symbol in entry.wants:
            if symbol not in self._holder:
                return symbol
        return None

    def _queue(self, key: str, entry: _Client) -> None:
        if entry.queued or self._next_for(entry) is None:
            return
        self._version += 1
        entry.queued = self._version
        heapq.heappush(self._waiting, (entry.last, entry.since, entry.queued, key))

    def _expire(self, now: float) -> None:
        expiries = self._expiries
        while expiries and expiries[0][0] <= now:
            until, key, symbol = heapq.heappop(expiries)
            entry = self._clients.get(key)
            if entry is not None and not symbol:  # an idle client's window has passed
                self._forget_if_idle(key, entry)
                continue
            if entry is None or entry.lingering.get(symbol) != until:
                continue  # wanted again, or settled, since
            del entry.lingering[symbol]
            entry.admitted.discard(symbol)
            self._hand_over(symbol, key)
            self._queue(key, entry)
            self._forget_if_idle(key, entry)

    def _hand_over(self, symbol: str, previous: str) -> None:
        """The client `symbol` was admitted for is gone: another that wants it inherits it
        (no token: it is being fetched already), or it lapses."""
        if self._holder.get(symbol) != previous:
            return
        del self._holder[symbol]
        for key in self._wanted_by.get(symbol, ()):
            self._holder[symbol] = key
            self._clients[key].admitted.add(symbol)
            return

    def _forget_if_idle(self, key: str, entry: _Client) -> None:
        """Forget a client with nothing wanted or admitted; one admitted something lately only
        once its window has passed (a client that comes back is no newcomer before that)."""
        if entry.wants or entry.admitted or self._clients.get(key) is not entry:
            return
        if self._clock() - entry.last >= REMEMBER:
            del self._clients[key]
        else:
            heapq.heappush(self._expiries, (entry.last + REMEMBER, key, ""))

    def _unindex(self, symbol: str, client: str) -> None:
        clients = self._wanted_by.get(symbol)
        if clients is not None:
            clients.discard(client)
            if not clients:
                del self._wanted_by[symbol]
