"""One WebSocket connection's way out: the seam between the endpoint and uvicorn's transport.

The endpoint (app.endpoints.websocket) writes payload bytes through a `Transport` and nothing
else. When uvicorn serves our protocol class (app.ws.fastpath), the transport is also the
connection's `Sink` (app.core.outbox): `prepare` frames a payload (RFC 6455, app.ws.framing, the
same function for every connection, so the fan-out frames a shared payload once) and `write`
puts the frame on the socket at once, or declines. Otherwise (uvicorn's plain protocol) there is
no sink and every message goes through the awaited ASGI send.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.types import Message
from starlette.websockets import WebSocket, WebSocketState

from app.ws.fastpath import ABORT, EXTENSION, WATCH_DIRECT, OnDirect
from app.ws.framing import text_frame

WriteFrame = Callable[[bytes], bool]


class Transport:
    __slots__ = ("_ws", "_receive", "prepare", "write", "_abort", "_watch")

    def __init__(self, ws: WebSocket) -> None:
        self._ws = ws
        self._receive: Callable[[], Awaitable[Message]] = ws._receive
        extensions = ws.scope.get("extensions") or {}
        self.prepare: Callable[[bytes], bytes] = text_frame
        write: WriteFrame | None = extensions.get(EXTENSION)
        # The fast path's non-blocking frame write; False when it must not write now.
        self.write: WriteFrame = write or _never
        self._abort: Callable[[], None] | None = extensions.get(ABORT)
        self._watch: Callable[[OnDirect | None], None] | None = extensions.get(WATCH_DIRECT)

    @property
    def fast(self) -> bool:
        """Whether payloads can be written without awaiting (the transport is a sink)."""
        return self.write is not _never

    def watch(self, on_direct: OnDirect | None) -> None:
        """The sink's direct write (app.core.outbox.Sink.watch): the protocol calls `on_direct`
        with the transport's write while frames may be written at once, None when not."""
        if self._watch is not None:
            self._watch(on_direct)
        elif on_direct is not None:
            on_direct(None)

    def write_now(self, payload: bytes) -> bool:
        """Write `payload` at once if the socket takes it; False (nothing written) if not."""
        # Without the fast path nothing can be written at once: do not frame for nothing.
        return self.fast and self.write(self.prepare(payload))

    def receive(self) -> Awaitable[Message]:
        """The next message from the peer, once the connection is accepted: the server's own
        ASGI receive, not Starlette's `WebSocket.receive` around it (whose coroutine frame an
        idle connection would keep all its life); `peer_gone` does its bookkeeping."""
        return self._receive()

    def peer_gone(self) -> None:
        """A `websocket.disconnect` was received (what Starlette's receive would record)."""
        self._ws.client_state = WebSocketState.DISCONNECTED

    async def send(self, payload: bytes) -> None:
        """The awaited send (uvicorn frames it); raises what Starlette's send raises."""
        await self._ws.send_text(payload.decode())

    @property
    def connected(self) -> bool:
        return self._ws.application_state == WebSocketState.CONNECTED

    async def close(self, code: int, reason: str) -> None:
        await self._ws.close(code=code, reason=reason)

    def abort(self) -> None:
        """Drop the connection at once (a peer that does not even read a close frame)."""
        if self._abort is not None:
            self._abort()

    def forget_handshake(self) -> None:
        """The upgrade request's headers, cookies and query are read: drop them (and what
        Starlette cached of them), about 1.5 KB a connection for the rest of its life. The scope
        is uvicorn's own (it keeps it as long as the connection), so the list goes for good."""
        self._ws.scope["headers"] = []
        for cached in ("_headers", "_cookies", "_query_params", "_url"):
            self._ws.__dict__.pop(cached, None)

    def release(self) -> None:
        """The connection is over: hold nothing of the protocol any more."""
        self.write = _never
        self._abort = None
        if self._watch is not None:
            self._watch(None)
            self._watch = None


def _never(frame: bytes) -> bool:
    return False
