"""The WebSocket fast path: uvicorn's own protocol class plus one non-blocking frame write.

Served with `WS_FAST_PATH=on` (`python -m app`) or `uvicorn --ws app.ws.fastpath:FastProtocol`
(uvicorn takes a protocol class by import path: a supported extension point).

Every quote frame on the plain ASGI path goes through Starlette's `send_text`, uvicorn's `send`
coroutine and websockets' sans-I/O framing, once per client; profiles of the tick workload put a
fifth of the server's CPU there. This class is uvicorn's `WebSocketsSansIOProtocol` unchanged
(handshake, origin refusal, ping/pong, max size, close handshake, drain) plus an ASGI scope
extension, `stocktracker.write_frame`: a plain function that writes one complete, already framed
WebSocket frame (`app.ws.framing`) to the transport at once, so the fan-out frames a batch once and
writes the same bytes to every client that shares it. It returns False, writing nothing, whenever
it must not write now: before the handshake completes, once a close was sent or received, or while
the transport is paused by flow control. The caller then uses the ordinary awaited
`websocket.send`, whose timeout closes a slow consumer with 1013, so backpressure and close codes
stay uvicorn's.

It is also lighter per idle connection (tests/e2e/test_memory.py bounds it): what uvicorn sets
the same for every connection of a server is kept once per server (`_PerServer`); once the
handshake is over the request and response go, websockets' handshake parser is swapped for a
fresh frame parser (it kept the request), the scope's extensions go (the app takes ours before it
accepts: app.ws.transport) and its `asgi` dict is shared; the receive waits on a bare future.
"""

from __future__ import annotations

import asyncio
import uuid
import weakref
from types import GeneratorType
from typing import Any, cast

from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.datastructures import Headers
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import Protocol, State
from websockets.server import ServerProtocol
from websockets.streams import StreamReader

from app.ws.primitives import Flag, Inbox

EXTENSION = "stocktracker.write_frame"
# Drops the connection at once (TCP reset): for a peer that does not even read a close frame.
ABORT = "stocktracker.abort"
# What a handshake request keeps once the handshake is over (see FastProtocol.send).
_NO_HEADERS = Headers()
# websockets gives each connection a random UUID for its debug log lines (160 bytes each).
_NO_ID = uuid.UUID(int=0)


class _ServerProtocol(ServerProtocol):
    """websockets' server protocol, except for a close frame inside a fragmented message.

    RFC 6455 5.4 lets control frames arrive between the fragments of a message, and 5.5.1 says
    a close frame is answered with one; websockets instead fails such a connection with 1002
    ("incomplete fragmented message"; Autobahn case 7.1.5 expects a clean 1000 close). The
    half-received message is dropped with the connection either way; we answer the close.
    """

    def recv_frame(self, frame: Frame) -> None:
        if frame.opcode is Opcode.CLOSE:
            self.current_size = None  # the unfinished message ends with the connection
        super().recv_frame(frame)


class _PerServer:
    """An attribute uvicorn sets on every connection that is the same for every connection of
    one server (its config, loop, logger, shared sets): kept once per server, not per instance.

    With them on the instance, a connection's `__dict__` has 38 keys, past the 30 that CPython
    shares between instances of a class: 1.6 KB of dict per connection instead of 0.3 KB."""

    __slots__ = ("name",)

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: FastProtocol | None, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return obj._server[self.name]

    def __set__(self, obj: FastProtocol, value: Any) -> None:
        obj._server[self.name] = value


# One dict of `_PerServer` values per running server (tests run several in one process).
_SERVERS: weakref.WeakKeyDictionary[ServerState, dict[str, Any]] = weakref.WeakKeyDictionary()


class FastProtocol(WebSocketsSansIOProtocol):
    # Set only in uvicorn's __init__, to the same value for every connection of a server.
    config = _PerServer()
    app = _PerServer()
    loop = _PerServer()
    logger = _PerServer()
    root_path = _PerServer()
    asgi_version = _PerServer()
    app_state = _PerServer()
    connections = _PerServer()
    tasks = _PerServer()
    default_headers = _PerServer()
    close_timeout = _PerServer()
    ping_interval = _PerServer()
    ping_timeout = _PerServer()

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._server = _SERVERS.setdefault(server_state, {})
        super().__init__(config, server_state, app_state, _loop)
        self.conn.__class__ = _ServerProtocol  # same state, one method changed (see above)
        self.conn.id = _NO_ID
        # Memory per idle connection: the same interfaces, without asyncio's up-front deques.
        self.queue = Inbox()  # type: ignore[assignment]
        self.writable = Flag()  # type: ignore[assignment]
        self.writable.set()
        self.after_close = 0  # bytes received after our close frame was sent

    def data_received(self, data: bytes) -> None:
        if self.close_sent:
            # After our close frame the peer owes only its own close; the rest is parsed and
            # thrown away. A client that keeps sending (after a flood's 1008, a 1009) would
            # keep the server parsing for uvicorn's whole close timeout: cut it off instead.
            self.after_close += len(data)
            if self.after_close > 2 * self.config.ws_max_size:
                self.transport.abort()
                return
        super().data_received(data)

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        if self.response.status_code == 101:
            extensions = cast(dict[str, object], self.scope["extensions"])
            extensions[EXTENSION] = self.write_frame
            extensions[ABORT] = self.abort

    def abort(self) -> None:
        if not self.disconnected:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        # The scope would keep this protocol alive through our bound methods (a reference cycle):
        # without them a closed connection is freed at once, not by a later full collection.
        extensions = self.scope.get("extensions") if hasattr(self, "scope") else None
        if extensions is not None:
            extensions.pop(EXTENSION, None)
            extensions.pop(ABORT, None)

    async def send(self, message: Any) -> None:
        await super().send(message)
        if self.handshake_complete and "response" in self.__dict__:
            # The handshake's request and response (and their header maps) are never read again.
            # websockets' parser keeps the request as a local of its (suspended) generator for
            # the connection's whole life: its headers go, the husk stays (~2.7 KB a connection
            # with a handful of headers, more with a browser's).
            self.request.headers = _NO_HEADERS
            del self.request, self.response
            self._parse_frames_only()
            # The app took our extensions before it accepted (app.ws.transport) and nothing
            # after the handshake uses `websocket.http.response`: the extensions go (and with
            # them the scope's references to this protocol); the scope's `asgi` dict, the same
            # for every connection, is shared.
            self.scope["extensions"] = {}
            self.scope["asgi"] = self._server.setdefault("scope asgi", self.scope["asgi"])

    async def receive(self) -> Any:
        """uvicorn's receive, with the inbox's wait inlined: an idle connection waits on a bare
        future here, not through one more coroutine frame."""
        inbox = cast(Inbox[Any], self.queue)
        while inbox.empty():
            waiter = inbox.waiter()
            try:
                await waiter
            except BaseException:
                inbox.pass_on(waiter)
                raise
            finally:
                inbox.forget(waiter)
        message = inbox.get_nowait()
        if self.read_paused and inbox.empty():
            self.read_paused = False
            self.transport.resume_reading()
        return message

    def _parse_frames_only(self) -> None:
        """websockets' handshake parser (ServerProtocol.parse, a generator that keeps the
        request) ends by delegating to the frame parser for the rest of the connection. Between
        frames, with nothing buffered, a fresh frame parser is the same state without it. (The
        delegated-to generator cannot be taken over instead: dropping its delegator closes it.)"""
        conn = self.conn
        handshake = conn.parser
        frames = getattr(handshake, "gi_yieldfrom", None)
        waiting = getattr(frames, "gi_yieldfrom", None)
        if not (
            isinstance(frames, GeneratorType)
            and frames.gi_code is Protocol.parse.__code__
            and isinstance(waiting, GeneratorType)
            and waiting.gi_code is StreamReader.at_eof.__code__  # between frames, buffer empty
        ):
            return
        parser = Protocol.parse(conn)
        next(parser)  # start it: it waits for data, as the one it replaces did
        conn.parser = parser
        handshake.close()

    def write_frame(self, frame: bytes) -> bool:
        """Write `frame` now, or return False if the ASGI send must handle it."""
        if (
            not self.handshake_complete
            or self.close_sent
            or self.disconnected
            or self.conn.state is not State.OPEN
            or not self.writable.is_set()
            or self.transport.is_closing()
        ):
            return False
        self.transport.write(frame)
        return True
