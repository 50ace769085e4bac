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

The hot path goes one step further (`stocktracker.watch_direct`): the protocol tells a watcher,
whenever it changes, whether frames may be written now, and if so hands it the transport's own
`write` (C, in uvloop). The protocol re-checks its state (`_gate`) after every way in: each
asyncio callback, each ASGI send, the keepalive timeout and the end of the app; only a
handshake that completes or a socket that resumes can open it again. So the fan-out's loop
writes with one call per client, without a Python frame or a state check of its own.

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
from collections.abc import Callable
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
# Registers a watcher of whether frames may be written now (see FastProtocol._gate).
WATCH_DIRECT = "stocktracker.watch_direct"
# A transport's write, handed to a watcher while writing at once is allowed; None when it is not.
Direct = Callable[[bytes], object]
OnDirect = Callable[[Direct | None], None]
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
        self._ready = False  # whether write_frame may write now (see _gate)
        self._on_direct: OnDirect | None = None

    # ---- whether frames may be written now ---------------------------------------------------

    def _gate(self) -> None:
        """Re-check whether a frame may be written now; tell the watcher when that changes."""
        ready = (
            self.handshake_complete
            and not self.close_sent
            and not self.disconnected
            and self.conn.state is State.OPEN
            and self.writable.is_set()
            and not self.transport.is_closing()
        )
        if ready != self._ready:
            self._ready = ready
            if self._on_direct is not None:
                self._on_direct(self.transport.write if ready else None)

    def watch_direct(self, on_direct: OnDirect | None) -> None:
        """Call `on_direct` now and whenever writing at once becomes allowed (with the
        transport's write) or stops being (None); None stops the calls."""
        self._on_direct = on_direct
        if on_direct is not None:
            on_direct(self.transport.write if self._ready else None)

    def pause_writing(self) -> None:
        super().pause_writing()
        self._gate()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._gate()

    def shutdown(self) -> None:
        super().shutdown()
        self._gate()

    def keepalive_timeout(self) -> None:
        super().keepalive_timeout()
        self._gate()

    async def run_asgi(self) -> None:
        try:
            await super().run_asgi()
        finally:
            self._gate()

    def data_received(self, data: bytes) -> None:
        if self.close_sent:
            # After our close frame the peer owes only its own close; the rest is parsed and
            # thrown away. A client that keeps sending (after a flood's 1008, a 1009) would
            # keep the server parsing for uvicorn's whole close timeout: cut it off instead.
            self.after_close += len(data)
            if self.after_close > 2 * self.config.ws_max_size:
                self.transport.abort()
                return
        try:
            super().data_received(data)
        finally:
            self._gate()

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        if self.response.status_code == 101:
            extensions = cast(dict[str, object], self.scope["extensions"])
            extensions[EXTENSION] = self.write_frame
            extensions[ABORT] = self.abort
            extensions[WATCH_DIRECT] = self.watch_direct

    def abort(self) -> None:
        if not self.disconnected:
            self.transport.abort()
            self._gate()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._gate()
        self._on_direct = None  # the watcher (an outbox) is not kept alive by a dead socket
        # The scope would keep this protocol alive through our bound methods (a reference cycle):
        # without them a closed connection is freed at once, not by a later full collection.
        extensions = self.scope.get("extensions") if hasattr(self, "scope") else None
        if extensions is not None:
            extensions.pop(EXTENSION, None)
            extensions.pop(ABORT, None)
            extensions.pop(WATCH_DIRECT, None)

    async def send(self, message: Any) -> None:
        try:
            await super().send(message)
        finally:
            self._gate()
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
        if not self._ready:
            return False
        self.transport.write(frame)
        return True
