"""Fair admission of symbols nobody has priced yet: no client can starve another's.

With a real provider every never-priced symbol costs quota whether it is real or junk, so the
fetcher asks about at most `NEW_SYMBOLS_PER_MINUTE` of them (app.poller). Before this, it took
them in alphabetical order from the cluster's subscriptions: one client subscribed to 200
made-up symbols (`0000`..`0199`) kept another user's real symbol from ever being priced.

So a replica reports such a symbol to the subscription registry (which is what makes the
fetcher ask about it) only once it has admitted it for one of the clients that want it:

- Admissions come from this replica's share of the fetcher's budget (`per_minute` divided by
  the live replicas), so admitted symbols do not queue up at the fetcher.
- Each client may have at most `per_client` admitted symbols waiting for a first price; what it
  wants beyond that waits, in the order it asked.
- A token goes to the waiting client that was admitted least in the last minute (ties: the one
  waiting longest), and a client admitted in the last minute may not take the last token: that
  one is kept for a client that has had none, so a newcomer's symbol is admitted at once even
  while several junk clients use up everything else.
- An admission outlives its watchers by `linger` seconds, so a long-poll client, which watches
  only while each poll waits, does not pay again for every poll.

Clients are told apart by address (`client_key`; an IPv6 client by its /64, which one client
usually holds). Behind a proxy trusted with `FORWARDED_ALLOW_IPS=*`, the address is whatever the
client put first in `X-Forwarded-For`, so the fairness is then per claimed address. Symbols
with a price need no admission; feeds that know their symbols (simulated, replay) refuse junk at
subscribe time and need none at all (`enabled` off).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

WINDOW = 60.0  # seconds over which a client's recent admissions are counted


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
    # Never-priced symbols it wants, in the order it first asked: symbol -> its watchers.
    wants: dict[str, int] = field(default_factory=dict)
    admitted: dict[str, float] = field(default_factory=dict)  # symbol -> kept until (or inf)
    recent: list[float] = field(default_factory=list)  # when it was admitted something
    since: float = 0.0  # when it began waiting for what it waits for now


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
        self._tokens = self._burst
        self._pending_cap = max(per_client, 1)
        self._linger = linger
        self._clock = clock
        self._stamp = clock()
        self._clients: dict[str, _Client] = {}
        self._wanted_by: dict[str, set[str]] = {}  # symbol -> clients that want it
        self._admitted: dict[str, int] = {}  # symbol -> clients it was admitted for

    def share(self, replicas: int) -> None:
        """This replica is one of `replicas` live ones: its share of the fetcher's budget."""
        per_minute = self._per_minute / max(replicas, 1)
        self._rate = per_minute / 60.0
        self._burst = max(per_minute, 1.0)

    def want(self, client: str, symbols: Iterable[str]) -> None:
        """A watcher at `client` wants `symbols`, none of which has a price yet."""
        if not self.enabled:
            return
        now = self._clock()
        entry = self._clients.get(client)
        if entry is None:
            entry = self._clients[client] = _Client(since=now)
        for symbol in symbols:
            if symbol in self._always:
                continue
            if not entry.wants:
                entry.since = now
            entry.wants[symbol] = entry.wants.get(symbol, 0) + 1
            self._wanted_by.setdefault(symbol, set()).add(client)
            if symbol in entry.admitted:
                entry.admitted[symbol] = float("inf")  # wanted again: no longer lingering
        self._allocate(now)

    def unwant(self, client: str, symbols: Iterable[str]) -> None:
        """A watcher at `client` no longer wants `symbols` (it left, or unsubscribed)."""
        entry = self._clients.get(client)
        if entry is None:
            return
        until = self._clock() + self._linger
        for symbol in symbols:
            left = entry.wants.get(symbol, 0) - 1
            if left > 0:
                entry.wants[symbol] = left
                continue
            if entry.wants.pop(symbol, None) is None:
                continue  # it got a price meanwhile (see `settled`)
            self._unindex(symbol, client)
            if symbol in entry.admitted:
                entry.admitted[symbol] = until  # kept a while, for a watcher coming back
        self.refill()

    def settled(self, symbols: Iterable[str]) -> None:
        """`symbols` got a price or were rejected: they need no room any more, anywhere."""
        for symbol in symbols:
            for client in self._wanted_by.pop(symbol, ()):
                self._clients[client].wants.pop(symbol, None)
            if self._admitted.pop(symbol, None) is not None:
                for entry in self._clients.values():
                    entry.admitted.pop(symbol, None)

    def admitted(self, symbol: str) -> bool:
        return not self.enabled or symbol in self._admitted or symbol in self._always

    def demand(self, symbol: str) -> int:
        """How many clients want `symbol` (at least 1 while it is admitted): what a replica
        reports for a never-priced symbol, so opening connections buys no priority."""
        return max(len(self._wanted_by.get(symbol, ())), 1)

    def refill(self) -> None:
        """Let lingering admissions lapse, admit what budgets allow, forget idle clients."""
        now = self._clock()
        for key, entry in list(self._clients.items()):
            for symbol, until in list(entry.admitted.items()):
                if until <= now:
                    del entry.admitted[symbol]
                    self._release(symbol)
            entry.recent = [t for t in entry.recent if now - t < WINDOW]
            if not entry.wants and not entry.admitted and not entry.recent:
                del self._clients[key]
        self._allocate(now)

    @property
    def clients(self) -> int:
        return len(self._clients)

    def _allocate(self, now: float) -> None:
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        while self._tokens >= 1:
            candidates = [
                (len(e.recent), e.since, key)
                for key, e in self._clients.items()
                if self._next_for(e) is not None
            ]
            if not candidates:
                return
            recent, _, key = min(candidates)
            if recent and self._tokens < 2:
                return  # the last token is kept for a client admitted nothing lately
            entry = self._clients[key]
            symbol = self._next_for(entry)
            assert symbol is not None
            self._tokens -= 1
            entry.recent.append(now)
            entry.admitted[symbol] = float("inf")
            entry.since = now
            self._admitted[symbol] = self._admitted.get(symbol, 0) + 1

    def _next_for(self, entry: _Client) -> str | None:
        """The first symbol `entry` waits for, if it has room for one more."""
        if sum(1 for until in entry.admitted.values() if until == float("inf")) >= (
            self._pending_cap
        ):
            return None
        for symbol in entry.wants:
            if symbol not in entry.admitted and symbol not in self._admitted:
                return symbol
        return None

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
