"""Fair admission of symbols nobody has priced yet: one client cannot starve another's.

With a real provider every never-priced symbol costs quota whether it is real or junk, so the
fetcher asks about at most `NEW_SYMBOLS_PER_MINUTE` of them (app.poller). Before this, it took
them in alphabetical order from the cluster's subscriptions: one client subscribed to 200
made-up symbols (`0000`..`0199`) kept another user's real symbol from ever being priced.

So a replica reports such a symbol to the subscription registry (which is what makes the
fetcher price it) only once one of the clients that want it has been given room for it. Clients
are told apart by address (an IPv6 client by its /64, which one client usually holds). Each
client may have at most `per_client` admitted symbols still waiting for a first price, and gets
at most `per_client` new admissions a minute; what it wants beyond that waits, in the order it
asked, and is admitted as its earlier symbols get priced or rejected and its budget refills.
A symbol several clients want is admitted as soon as any of them has room. With `per_client`
at half the fetcher's budget, no single client can use up the fetcher's budget, so another
client's new symbol is asked about at once.

Symbols with a price (or on the always-fetched board, which has one within a tick) need no
admission; feeds that know their symbols (simulated, replay) need none at all (`enabled` off).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field


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
    tokens: float
    stamp: float
    # Never-priced symbols this client wants, in the order it first asked: symbol -> how many
    # of its watchers want it (connections, page renders, long-polls).
    wants: dict[str, int] = field(default_factory=dict)
    admitted: set[str] = field(default_factory=set)  # given room, not priced yet


class Admission:
    def __init__(
        self,
        per_client: float,
        *,
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.enabled = enabled
        self._rate = per_client / 60.0
        self._burst = max(per_client, 1.0)
        self._pending_cap = max(int(per_client), 1)
        self._clock = clock
        self._clients: dict[str, _Client] = {}
        self._wanted_by: dict[str, set[str]] = {}  # symbol -> clients that want it
        self._admitted: dict[str, int] = {}  # symbol -> clients that were given room for it

    def want(self, client: str, symbols: Iterable[str]) -> None:
        """A watcher at `client` wants `symbols`, none of which has a price yet."""
        if not self.enabled:
            return
        entry = self._clients.get(client)
        if entry is None:
            entry = self._clients[client] = _Client(self._burst, self._clock())
        for symbol in symbols:
            entry.wants[symbol] = entry.wants.get(symbol, 0) + 1
            self._wanted_by.setdefault(symbol, set()).add(client)
        self._admit(entry)

    def unwant(self, client: str, symbols: Iterable[str]) -> None:
        """A watcher at `client` no longer wants `symbols` (it left, or unsubscribed)."""
        entry = self._clients.get(client)
        if entry is None:
            return
        for symbol in symbols:
            left = entry.wants.get(symbol, 0) - 1
            if left > 0:
                entry.wants[symbol] = left
                continue
            if entry.wants.pop(symbol, None) is None:
                continue  # it got a price meanwhile (see `settled`)
            self._unindex(symbol, client)
            if symbol in entry.admitted:
                entry.admitted.discard(symbol)
                self._release(symbol)
        self._admit(entry)

    def settled(self, symbols: Iterable[str]) -> None:
        """`symbols` got a price or were rejected: they need no room any more, anywhere."""
        for symbol in symbols:
            for client in self._wanted_by.pop(symbol, ()):
                entry = self._clients[client]
                del entry.wants[symbol]
                entry.admitted.discard(symbol)
            self._admitted.pop(symbol, None)

    def admitted(self, symbol: str) -> bool:
        return not self.enabled or symbol in self._admitted

    def refill(self) -> None:
        """Admit what waits where budgets have refilled; forget clients with nothing left and
        a full budget (a client that comes back gets no more than it had)."""
        now = self._clock()
        for key, entry in list(self._clients.items()):
            self._admit(entry, now)
            if not entry.wants and entry.tokens >= self._burst:
                del self._clients[key]

    @property
    def clients(self) -> int:
        return len(self._clients)

    def waiting(self) -> int:
        """Symbols wanted but not admitted yet (across clients; a symbol may count twice)."""
        return sum(len(e.wants) - len(e.admitted) for e in self._clients.values())

    def _admit(self, entry: _Client, now: float | None = None) -> None:
        now = self._clock() if now is None else now
        entry.tokens = min(self._burst, entry.tokens + (now - entry.stamp) * self._rate)
        entry.stamp = now
        for symbol in entry.wants:
            if len(entry.admitted) >= self._pending_cap:
                return
            if symbol in entry.admitted:
                continue
            if symbol in self._admitted:  # room was made for it elsewhere: no cost here
                continue
            if entry.tokens < 1:
                return
            entry.tokens -= 1
            entry.admitted.add(symbol)
            self._admitted[symbol] = self._admitted.get(symbol, 0) + 1

    def _unindex(self, symbol: str, client: str) -> None:
        clients = self._wanted_by.get(symbol)
        if clients is not None:
            clients.discard(client)
            if not clients:
                del self._wanted_by[symbol]

    def _release(self, symbol: str) -> None:
        left = self._admitted.get(symbol, 0) - 1
        if left > 0:
            self._admitted[symbol] = left
        else:
            self._admitted.pop(symbol, None)
