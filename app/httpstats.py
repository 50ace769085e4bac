"""HTTP requests by route template and status, and their durations, for `/metrics`.

Labels are bounded whatever clients send: the route's template (`/stock/{symbol:path}`, never the
path itself; `unmatched` for anything no route serves) and the status code the app answered. The
duration runs from the app receiving the request to the end of its response body (a long-poll
counts its wait). Requests refused by the HTTP protocol before the app sees them (app.http_limits:
413, 414, 429 ...) are not here: they never cost a route. WebSockets are not requests: they pass
untouched (`stocktracker_connections` counts them).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Sequence

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.stats import Histogram

UNMATCHED = "unmatched"


class RequestStats:
    """(route template, status) -> duration histogram (its count is the request count)."""

    def __init__(self) -> None:
        self.by_route: dict[tuple[str, str], Histogram] = {}

    def observe(self, route: str, status: int, seconds: float) -> None:
        key = (route, str(status))
        hist = self.by_route.get(key)
        if hist is None:
            hist = self.by_route[key] = Histogram()
        hist.observe(seconds)


class RequestMetrics:
    """ASGI middleware feeding `RequestStats`; `routes` are the app's, to name the template."""

    def __init__(self, app: ASGIApp, stats: RequestStats, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.stats = stats
        self.routes = routes

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] != "http":
            return self.app(scope, receive, send)
        return self._measured(scope, receive, send)

    async def _measured(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering
        # Routing rewrites these in place (a Mount moves the path to root_path).
        where = {"path": scope["path"], "root_path": scope.get("root_path", "")}

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.stats.observe(self._template(scope, where), status, time.perf_counter() - start)

    def _template(self, scope: Scope, where: dict[str, str]) -> str:
        route = scope.get("route")  # set by Starlette's router (recent releases)
        path = getattr(route, "path", None)
        if isinstance(path, str):
            return path or "/"
        original = {**scope, **where}
        for candidate in self.routes:
            match, _ = candidate.matches(original)
            if match is Match.FULL:
                found = getattr(candidate, "path", None)
                return found if isinstance(found, str) and found else UNMATCHED
        return UNMATCHED
