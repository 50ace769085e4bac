"""What one HTTP request may cost before the app sees it: head size, URL length, body size, the
time to send it, and how many connections may be open at once.

uvicorn's httptools protocol takes a request head of any size (a 10 MB header was accepted and
buffered), keeps a connection that never finishes its head forever (slowloris: 200 half-open
connections stayed), buffers any body, and counts no connections. `LimitedHttpProtocol` is that
protocol plus these bounds; uvicorn takes an HTTP protocol class by import path (`--http
app.http_limits:LimitedHttpProtocol`, what `python -m app` and the Procfile use).

Every refusal is a short JSON error (`{"error": {"code", "message"}}`) and closes the connection:
414 for a request line over `max_url_bytes`, 431 for a head over `max_head_bytes`, 413 for a body
over `max_body_bytes`, 408 when a started request is not complete `request_timeout` seconds after
its first byte (a connection that sends nothing at all is closed silently after that time), and
503 for every request but `/health` while more than `max_connections` connections (HTTP and
WebSocket) are open, so a load balancer's liveness probe still gets through. Bytes are counted
as they arrive, so a head is never buffered much beyond its bound (one socket read at most).
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import httptools
import orjson
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.server import ServerState

from app.clients import ClientBudget
from app.logbudget import client_noise

# Where the lifespan state holds this process's limits and per-client budgets (see app.main);
# defaults (and no per-client budget) when absent.
STATE_KEY = "http_limits"
CLIENTS_KEY = "client_budget"
ALWAYS_OPEN = frozenset({b"/health"})


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """Sizes in bytes, times in seconds; `max_connections` 0 means no cap."""

    max_url_bytes: int = 8 * 1024
    max_head_bytes: int = 16 * 1024
    max_body_bytes: int = 64 * 1024
    request_timeout: float = 10.0
    max_connections: int = 0


class Reading(enum.Enum):
    IDLE = "idle"  # between requests (or before the first): uvicorn's keep-alive timer rules
    HEAD = "head"  # request line and headers arriving
    BODY = "body"  # the body arriving (the app may already run)
    DONE = "done"  # the whole request is in; the app answers it
    REFUSED = "refused"  # a request broke a limit: nothing more is read on this connection


class Refused(Exception):
    """A request past a limit: answered with `status` and a JSON error, then closed."""

    def __init__(
        self, status: int, code: str, message: str, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.retry_after = retry_after


class LimitedHttpProtocol(HttpToolsProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits: HttpLimits = app_state.get(STATE_KEY) or HttpLimits()
        self.clients: ClientBudget | None = app_state.get(CLIENTS_KEY)  # per-client budgets
        self.reading = Reading.IDLE
        self.head_bytes = 0  # bytes received while the current head was incomplete
        self.head_size = 0  # bytes of the headers parsed so far
        self.body_bytes = 0
        self.request_timer: asyncio.TimerHandle | None = None

    # ---- connection --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a connection that never sends a byte is dropped too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self) -> None:
        self._disarm()  # the WebSocket protocol takes the connection over, with its own timeouts
        super().handle_websocket_upgrade()

    def data_received(self, data: bytes) -> None:
        # uvicorn's, except that refusals get their own answers and client mistakes are not
        # logged one line each (see app.logbudget).
        if self.transport.is_closing() or self.reading is Reading.REFUSED:
            return  # (refused: the answers still owed go out, then the connection closes)
        self._unset_keepalive_if_required()
        head_began_before = self.reading is Reading.HEAD
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                client_noise.note("unsupported_upgrade", "client: unsupported upgrade request")
            return
        except httptools.HttpParserError as exc:
            # A limit raised inside a parser callback arrives wrapped (as the error's context).
            # Its traceback holds the callback's frame, whose caller is this frame, which holds
            # it: a cycle per refusal, kept for ever once GC_TUNING froze it. So it is cut.
            cause, exc.__context__ = exc.__context__, None
            if cause is not None:
                cause.__traceback__ = None
            if isinstance(cause, Refused):
                self._refuse(cause)
            else:
                client_noise.note("bad_request", f"client: invalid HTTP request ({exc})")
                self._respond(400, "bad_request", "invalid HTTP request")
            del cause
            return
        if self.reading is Reading.HEAD and head_began_before:
            # Still inside a head that began before this chunk: all of it is head, counted so a
            # huge header is refused while it arrives instead of being buffered whole. (A head
            # that began inside this chunk, after pipelined requests, is counted exactly by the
            # callbacks once its headers are whole: at most one read more.)
            self.head_bytes += len(data)
            if self.head_bytes > self.limits.max_head_bytes:
                self._refuse(_head_too_large(self.limits))

    # ---- parser callbacks --------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.reading = Reading.HEAD
        self.head_bytes = self.head_size = self.body_bytes = 0
        if self.request_timer is None:
            self._arm()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.limits.max_url_bytes:
            raise Refused(
                414, "uri_too_long", f"the request line is over {self.limits.max_url_bytes} bytes"
            )

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self.head_size += len(name) + len(value) + 4  # "name: value\r\n"
        if self.head_size + len(self.url) > self.limits.max_head_bytes:
            raise _head_too_large(self.limits)

    def on_headers_complete(self) -> None:
        limits = self.limits
        if limits.max_connections and len(self.connections) > limits.max_connections:
            if self._path() not in ALWAYS_OPEN:
                raise Refused(
                    503,
                    "too_many_connections",
                    f"this server holds its maximum of {limits.max_connections} connections; "
                    "try again later or another replica",
                )
        length = self._content_length()
        if length is not None and length > limits.max_body_bytes:
            raise _body_too_large(limits)
        budget = self.clients
        if budget is not None and budget.rate:
            # Here rather than in the app: a refusal must cost far less than the request it
            # refuses (a client flooding `/` got ~5,000 429s a second through the middleware,
            # a core's worth). WebSocket upgrades count too: a connection costs a handshake.
            if self._path() not in ALWAYS_OPEN:
                wait = budget.request(budget.key_for(self.client, self.headers))
                if wait:
                    raise Refused(429, "rate_limited", "too many requests; slow down", wait)
        self.reading = Reading.BODY
        super().on_headers_complete()

    def _path(self) -> bytes:
        return bytes(httptools.parse_url(self.url).path)

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        if self.body_bytes > self.limits.max_body_bytes:
            raise _body_too_large(self.limits)  # a chunked body that grew past the limit
        super().on_body(body)

    def on_message_complete(self) -> None:
        self.reading = Reading.DONE
        self._disarm()
        super().on_message_complete()

    # ---- helpers -----------------------------------------------------------------------------

    def _content_length(self) -> int | None:
        for name, value in self.headers:
            if name == b"content-length":
                try:
                    return int(value)
                except ValueError:
                    return None  # the parser rejects it itself
        return None

    def _arm(self) -> None:
        self._disarm()
        self.request_timer = self.loop.call_later(self.limits.request_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self.request_timer is not None:
            self.request_timer.cancel()
            self.request_timer = None

    def _timed_out(self) -> None:
        self.request_timer = None
        if self.transport.is_closing():
            return
        if self.reading in (Reading.HEAD, Reading.BODY):
            self._refuse(
                Refused(
                    408,
                    "request_timeout",
                    f"the request did not arrive within {self.limits.request_timeout:g}s",
                )
            )
        elif self.cycle is None:
            self.transport.close()  # connected, never sent a byte

    def _refuse(self, refusal: Refused) -> None:
        client_noise.note(refusal.code, f"refused a request: {refusal.message}")
        if self._answers_owed_first():
            return
        retry_after = 5.0 if refusal.status == 503 else refusal.retry_after
        self._respond(refusal.status, refusal.code, refusal.message, retry_after)

    def _answers_owed_first(self) -> bool:
        """With pipelined requests before the refused one still unanswered, a refusal written
        now would overtake their answers: let those go out in order, then close (the refused
        request gets no answer). True if that is so."""
        if self.reading is Reading.BODY:
            refused = self.cycle  # the request whose body broke a limit
            if not any(c is refused for c, _ in self.pipeline):
                if refused is None or not refused.response_started:
                    # It is the one being answered: the app (reading its body, maybe) is told
                    # the client left, and the refusal is its answer.
                    if refused is not None:
                        refused.disconnected = True
                        refused.message_event.set()
                    return False
                if refused.response_complete:  # answered already: nothing more to say
                    self._disarm()
                    self.reading = Reading.REFUSED
                    self.transport.close()
                    return True
                last: RequestResponseCycle | None = refused  # the app is answering it
            else:
                self.pipeline = deque(item for item in self.pipeline if item[0] is not refused)
                # Answered last: the newest still queued (uvicorn queues on the left); with
                # none, the one running, after which the keep-alive timeout closes the
                # connection.
                last = self.pipeline[0][0] if self.pipeline else None
        else:
            last = self.cycle  # the newest request before the refused one
            if last is None or last.response_complete:
                return False
        self._disarm()
        self.reading = Reading.REFUSED
        self.flow.pause_reading()
        if last is not None:
            last.keep_alive = False  # its answer closes the connection
        return True

    def _respond(
        self, status: int, code: str, message: str, retry_after: float | None = None
    ) -> None:
        self._disarm()
        self.reading = Reading.DONE
        body = orjson.dumps({"error": {"code": code, "message": message}})
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: ",
            str(len(body)).encode(),
            b"\r\nconnection: close\r\n",
        ]
        if retry_after is not None:
            head += [b"retry-after: ", str(max(1, round(retry_after))).encode(), b"\r\n"]
        self.transport.write(b"".join([*head, b"\r\n", body]))
        self.transport.close()


def _head_too_large(limits: HttpLimits) -> Refused:
    return Refused(
        431,
        "header_too_large",
        f"the request head (line and headers) is over {limits.max_head_bytes} bytes",
    )


def _body_too_large(limits: HttpLimits) -> Refused:
    return Refused(413, "body_too_large", f"the request body is over {limits.max_body_bytes} bytes")


class QuietDisconnects:
    """Pure ASGI middleware: a request whose client left (or was cut off by a limit above)
    while the app read its body ends quietly. Otherwise Starlette's `ClientDisconnect` reaches
    uvicorn, which logs it as an application error with a full traceback: a log line of ~50
    lines that any client could cause at will."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] != "http":
            return self.app(scope, receive, send)  # no frame kept for a WebSocket's whole life
        return self._quietly(scope, receive, send)

    async def _quietly(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except ClientDisconnect:
            client_noise.note("client_disconnect", "client: left before its request was read")
