"""The access gate: with `ACCESS_TOKENS` set, nothing but the probes and the login page is served
to a caller without credentials (see app/access.py for what counts).

Refusals, by what was asked for:

- a page: `303` to `/login?next=<the page>` (an htmx request: `401` with `HX-Redirect` there);
- `/api/*`: `401` `{"error": {"code": "unauthorized", ...}}` with `WWW-Authenticate: Bearer`;
- a static file other than the login page's stylesheet and icon: `401`, plain text;
- a WebSocket upgrade: `401` before the upgrade (the denial-response extension; a server without
  it answers `403`).

`/health`, `/ready` and `/metrics` pass: their endpoints decide what an operator may see.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable
from urllib.parse import quote

from starlette import status
from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from app.access import CHALLENGE, AccessPolicy

log = logging.getLogger(__name__)

# The probes (decided by their endpoints), and the login page with what it loads.
OPEN_PATHS = frozenset({
    "/health", "/ready", "/metrics", "/login", "/logout", "/static/app.css", "/static/favicon.svg",
})  # fmt: skip
UNAUTHORIZED = {"code": "unauthorized", "message": "sign in, or send Authorization: Bearer <token>"}


class Area(enum.Enum):
    OPEN = "open"
    PAGE = "page"
    API = "api"
    ASSET = "asset"
    SOCKET = "socket"


def area(scope: Scope) -> Area:
    path: str = scope["path"]
    if scope["type"] == "websocket":
        return Area.SOCKET
    if path in OPEN_PATHS:
        return Area.OPEN
    if path.startswith("/api/"):
        return Area.API
    if path.startswith("/static/"):
        return Area.ASSET
    return Area.PAGE


class AccessGate:
    """Pure ASGI middleware, outside `WebSocketShortcut` so that `/ws` is gated too. It passes a
    request on by returning the inner app's awaitable, so an admitted WebSocket connection keeps
    no frame of it alive for its whole life."""

    def __init__(self, app: ASGIApp, policy: AccessPolicy) -> None:
        self.app = app
        self.policy = policy

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if not self.policy.enabled or scope["type"] not in ("http", "websocket"):
            return self.app(scope, receive, send)
        where = area(scope)
        if where is Area.OPEN:
            return self.app(scope, receive, send)
        headers = Headers(scope=scope)
        caller = self.policy.identify(headers, cookie_parser(headers.get("cookie", "")))
        if self.policy.admits(caller):
            return self.app(scope, receive, send)
        log.debug("refused %s %s without credentials", where.value, scope["path"])
        if where is Area.SOCKET:
            return _refuse_upgrade(scope, receive, send)
        return refusal(scope, where, headers)(scope, receive, send)


def refusal(scope: Scope, where: Area, headers: Headers) -> Response:
    if where is Area.API:
        return JSONResponse({"error": UNAUTHORIZED}, 401, headers=CHALLENGE)
    if where is Area.ASSET:
        return PlainTextResponse("Unauthorized", 401, headers=CHALLENGE)
    login = login_url(scope)
    if headers.get("hx-request") == "true":
        return Response(status_code=401, headers={**CHALLENGE, "HX-Redirect": login})
    return RedirectResponse(login, 303, headers={"Cache-Control": "no-store"})


def login_url(scope: Scope) -> str:
    """`/login?next=...`: back to the page asked for (GET), else to the dashboard."""
    target = "/"
    if scope["method"] in ("GET", "HEAD"):
        target = scope["path"]
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
    return "/login" if target == "/" else "/login?next=" + quote(target, safe="/")


async def _refuse_upgrade(scope: Scope, receive: Receive, send: Send) -> None:
    ws = WebSocket(scope, receive, send)
    try:
        await ws.send_denial_response(JSONResponse({"error": UNAUTHORIZED}, 401, CHALLENGE))
    except RuntimeError:  # no denial responses here: closing before accept answers 403
        await ws.close(code=status.WS_1008_POLICY_VIOLATION)
