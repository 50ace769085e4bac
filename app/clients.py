"""Per client: how many connections it may hold and how many HTTP requests it may make.

Every request is bounded on its own (app.http_limits), but a client within every bound can still
send many of them: eight keep-alive connections asking for `/` as fast as they could (180 a
second, each inside every limit) took an honest WebSocket client's round trip from 1 to 55 ms;
and one client could hold all `MAX_CONNECTIONS`, so everybody else got 503. So each client
(`app.core.admission.client_key`: its address as resolved from a trusted proxy's
`X-Forwarded-For`, an IPv6 client by its /64) may hold at most `max_open` connections at once
(WebSockets and HTTP requests in progress, long-polls included; past it: 503) and make
`rate` HTTP requests a second with a burst of twice that (past it: 429 with `Retry-After`).
`/health` is exempt, so a load balancer's probe is never refused.

Clients behind one NAT address share these; raise `CLIENT_HTTP_RATE` and
`MAX_CONNECTIONS_PER_CLIENT` for a deployment whose users all come from one office network.
An entry is kept while its client has something open or its budget is refilling, so memory
follows the clients actually present.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from app.core.admission import client_key
from app.logbudget import client_noise

OPEN_PATHS = frozenset({"/health"})
SWEEP_EVERY = 1024  # requests between sweeps of finished entries


@dataclass(slots=True)
class _Client:
    tokens: float
    stamp: float
    open: int = 0


class ClientBudget:
    def __init__(
        self,
        max_open: int,
        rate: float,
        *,
        trusted_proxies: str = "127.0.0.1",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_open = max_open  # 0: no cap
        self.rate = rate  # 0: no rate limit
        self.burst = max(2 * rate, 1.0)
        self._clock = clock
        self._clients: dict[str, _Client] = {}
        self._since_sweep = 0
        # uvicorn's own reading of X-Forwarded-For (FORWARDED_ALLOW_IPS), for the HTTP protocol,
        # which sees requests before uvicorn's proxy middleware rewrites the client address.
        self._trusted = ProxyHeadersMiddleware(_nothing, trusted_proxies).trusted_hosts

    def key_for(self, peer: tuple[str, int] | None, headers: list[tuple[bytes, bytes]]) -> str:
        """The client of a request from `peer` with `headers`, as uvicorn's proxy middleware
        would name it (`client_of` gives the same once it has)."""
        host = peer[0] if peer else None
        if host is not None and host in self._trusted:
            forwarded = [value for name, value in headers if name == b"x-forwarded-for"]
            if forwarded:
                claimed, _ = self._trusted.get_trusted_client_address(
                    b", ".join(forwarded).decode("latin1")
                )
                host = claimed or host
        return client_key(host)

    def open(self, key: str) -> bool:
        """Count a connection (or request in progress) of `key`; False, uncounted, at the cap."""
        entry = self._entry(key)
        if self.max_open and entry.open >= self.max_open:
            return False
        entry.open += 1
        return True

    def close(self, key: str) -> None:
        entry = self._clients.get(key)
        if entry is not None and entry.open > 0:
            entry.open -= 1

    def request(self, key: str) -> float:
        """Take one HTTP request from `key`'s budget: 0.0, or the seconds until it may."""
        if not self.rate:
            return 0.0
        entry = self._entry(key)
        now = self._clock()
        entry.tokens = min(self.burst, entry.tokens + (now - entry.stamp) * self.rate)
        entry.stamp = now
        if entry.tokens >= 1:
            entry.tokens -= 1
            return 0.0
        return (1 - entry.tokens) / self.rate

    @property
    def clients(self) -> int:
        return len(self._clients)

    def _entry(self, key: str) -> _Client:
        self._since_sweep += 1
        if self._since_sweep >= SWEEP_EVERY:
            self.sweep()
        entry = self._clients.get(key)
        if entry is None:
            entry = self._clients[key] = _Client(self.burst, self._clock())
        return entry

    def sweep(self) -> None:
        """Forget clients with nothing open and a full budget (they would start over as new)."""
        self._since_sweep = 0
        now = self._clock()
        for key, entry in list(self._clients.items()):
            full = not self.rate or entry.tokens + (now - entry.stamp) * self.rate >= self.burst
            if not entry.open and full:
                del self._clients[key]


def client_of(scope: Scope) -> str:
    client = scope.get("client")
    return client_key(client[0] if client else None)


class ClientLimits:
    """Pure ASGI middleware counting a client's HTTP requests in progress against its
    `max_open` (WebSockets are counted by their endpoint, which the shortcut past the
    middleware reaches directly; the request rate is checked by app.http_limits, before the
    request costs a task)."""

    def __init__(self, app: ASGIApp, budget: ClientBudget) -> None:
        self.app = app
        self.budget = budget

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return self.app(scope, receive, send)
        return self._limited(scope, receive, send)

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        budget, key = self.budget, client_of(scope)
        if not budget.open(key):
            client_noise.note("client_connections", f"client {key} at its connection cap (503)")
            message = f"at most {budget.max_open} connections and requests at once per client"
            await _refuse(send, 503, "too_many_connections", message, 5)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            budget.close(key)


async def _refuse(send: Send, status: int, code: str, message: str, retry_after: float) -> None:
    body = orjson.dumps({"error": {"code": code, "message": message}})
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(max(1, round(retry_after))).encode()),
        ],
    })  # fmt: skip
    await send({"type": "http.response.body", "body": body})


async def _nothing(scope: object, receive: object, send: object) -> None:
    """The app of the proxy middleware used only for its trusted-hosts reading."""
