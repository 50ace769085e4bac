"""`LOG_FORMAT=json`: one JSON object per line, for the app's and uvicorn's lines alike.

Each line is `{"time", "level", "logger", "message", "replica"}` plus `"request"` when it was
written while serving an HTTP request or a WebSocket connection, and `"exc"` (the traceback) when
there is one. The request id is the router's `X-Request-ID` when it sent a well-formed one
(Heroku's router does), else 12 random hex digits; `RequestIds` puts it in a context variable,
which every task the request starts inherits, so a traceback logged by uvicorn for a failed
request carries it too. It is installed only with `LOG_FORMAT=json` (text lines do not show it,
and an idle WebSocket should not pay for it).
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Awaitable
from contextvars import ContextVar
from datetime import UTC, datetime

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
# What a router's request id may look like to be taken as ours (bounded, printable).
_INCOMING_ID = re.compile(rb"[A-Za-z0-9._:-]{8,64}")


class JsonFormatter(logging.Formatter):
    def __init__(self, replica: str) -> None:
        super().__init__()
        self.replica = replica

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "replica": self.replica,
        }
        rid = request_id.get()
        if rid is not None:
            line["request"] = rid
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


class RequestIds:
    """ASGI middleware: a request id per HTTP request and per WebSocket connection."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine of its own: no frame kept per connection (see app.endpoints.websocket).
        if scope["type"] in ("http", "websocket"):
            request_id.set(_incoming(scope) or secrets.token_hex(6))
        return self.app(scope, receive, send)


def _incoming(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            return value.decode() if _INCOMING_ID.fullmatch(value) else None
    return None
