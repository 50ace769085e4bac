"""`/ws`: the WebSocket endpoint. One task per connection (its reader); a writer task only while
a send must be awaited.

`?format=json` (default) speaks the protocol of docs/protocol.md; `?format=html` is for htmx
pages: the same subscriptions, but quotes, status and rejections arrive as `hx-swap-oob`
fragments and no acknowledgements are sent (a symbol refused as unknown at subscribe time gets
its rejected row instead). `?symbols=A,B` subscribes at connect (the pages' script puts their
symbols in the URL, so a reconnect resubscribes to exactly them).

Bad input never costs other clients anything: malformed requests get an `error` and the
connection stays usable; oversized messages close with 1009; floods get `rate_limited` errors and,
if they go on, 1008; a client that stops reading is closed with 1013 by its own writer (and
dropped if it cannot even take the close frame). Everything goes out through the connection's
`app.ws.transport.Transport`: served by `app.ws.fastpath.FastProtocol`, payloads are framed and
written without awaiting while the socket accepts them; the plain ASGI path is the fallback and
works the same, with a writer task for every send.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable
from typing import Any

from starlette import status
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from app import protocol
from app.clients import client_of
from app.core.outbox import Outbox
from app.core.wire import WireFormat
from app.endpoints import alerts
from app.endpoints.query import wire_format_name
from app.formats import JSON_FORMAT, HtmlFormat
from app.logbudget import client_noise
from app.services import Services, services
from app.ws.transport import Transport

log = logging.getLogger(__name__)

# Dropped messages (beyond the rate) tolerated before a flooding client is closed with 1008.
FLOOD_TOLERANCE = 100
CLOSE_TIMEOUT = 2.0


def origin_allowed(headers: Headers, allowed: tuple[str, ...]) -> bool:
    """Browsers always send Origin on a WebSocket upgrade; programmatic clients usually do not."""
    origin = headers.get("origin")
    if origin is None:
        return True
    origin = origin.lower().rstrip("/")
    if "*" in allowed or origin in allowed:
        return True
    host = headers.get("host", "").lower()
    return bool(host) and origin in (f"http://{host}", f"https://{host}")


class TokenBucket:
    """A client's message budget: `rate` tokens a second, at most `burst` saved up. A message
    costs one token per started `COST_UNIT` bytes of the request or its reply, whichever is
    larger (a reply's excess is charged after the fact, as debt), so a client's budget bounds
    the bytes and work it causes, not only its message count."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, max(burst, 1.0)
        self.tokens = self.burst
        self.stamp = time.monotonic()

    def take(self, cost: float = 1.0) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        cost = min(cost, self.burst)  # the largest allowed message must stay possible
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False

    def charge(self, cost: float) -> None:
        """Take `cost` more, going into debt if need be (repaid at `rate` before the next)."""
        self.tokens -= cost


# Bytes a message or reply may be per token of the client's budget (see TokenBucket).
COST_UNIT = 4096


def cost_of(size: int) -> int:
    return 1 + size // COST_UNIT


async def websocket_endpoint(ws: WebSocket) -> None:
    await connect(ws)


def connect(ws: WebSocket) -> Awaitable[None]:
    """Refuse the upgrade, or return the connection's life to await. A plain function (the
    refusals and `Connection.serve` are what is awaited), so no frame of it is kept for as long
    as the connection lives."""
    svc = services(ws)
    if not origin_allowed(ws.headers, svc.settings.allowed_origins):
        client_noise.note(
            "bad_origin", f"refused a /ws upgrade from origin {ws.headers.get('origin')!r}"
        )
        return ws.close(code=status.WS_1008_POLICY_VIOLATION)  # before accept: HTTP 403
    if svc.hub.draining:
        return _refuse(ws, 503)
    fmt_name = wire_format_name(ws)
    if fmt_name is None:
        return ws.close(code=status.WS_1008_POLICY_VIOLATION)
    fmt: WireFormat = JSON_FORMAT if fmt_name == "json" else HtmlFormat(svc.renderer)
    client = client_of(ws.scope)
    if not svc.clients.open(client):
        client_noise.note("client_connections", f"client {client} at its connection cap (503)")
        return _refuse(ws, 503)
    try:
        connection = Connection(ws, svc, fmt, client)
    except BaseException:
        svc.clients.close(client)
        raise
    # Awaited at once by the caller (no cancellation can come between): its `finally` gives
    # the client's connection back.
    return connection.serve()


class Phase(enum.Enum):
    """Where a connection is in its life (Starlette's WebSocketState, for our side of it)."""

    OPEN = "open"  # reading and writing
    CUTTING_OFF = "cutting off"  # it broke a rule: nothing more is read, then it is closed
    ENDED = "ended"  # the server is done with it: nothing cancels the task on its behalf


class Connection:
    """One client: its reader runs in the ASGI task; what is owed to it is written at once on the
    fast path, and only a write that must wait (no fast path, a paused socket, a close) starts a
    writer task, which ends when nothing is owed. An idle connection is one task."""

    __slots__ = (
        "ws", "svc", "client", "transport", "outbox", "json", "bucket", "dropped", "_replied",
        "_writer", "_task", "_phase", "_attached", "_owner",
    )  # fmt: skip

    def __init__(self, ws: WebSocket, svc: Services, fmt: WireFormat, client: str) -> None:
        self.ws = ws
        self.svc = svc
        self.client = client
        # The one way out (app.ws.transport): written at once when the socket takes it (the
        # fast path; then it is also the outbox's sink), else through the awaited send.
        self.transport = Transport(ws)
        self.outbox = Outbox(fmt, max_bytes=svc.settings.max_queued_bytes)
        self.outbox.client = client
        if self.transport.fast:
            self.outbox.sink = self.transport
        self.json = fmt.name == "json"
        rate = svc.settings.client_rate
        self.bucket = TokenBucket(rate, 2 * rate)
        self.dropped = 0
        self._replied = 0  # bytes of replies to the message being handled
        self._writer: asyncio.Task[None] | None = None
        self._task: asyncio.Task[Any] | None = None
        self._phase = Phase.OPEN
        self._attached = False
        self._owner: str | None = None  # whose alerts this connection shows (app.endpoints.alerts)

    async def serve(self) -> None:
        """The connection's whole life, in one frame (an idle connection keeps the frames of
        every coroutine it awaits through): accept, set up, read until the peer goes or
        `_end` cancels, clean up, give the client's connection slot back."""
        try:
            await self.ws.accept()
            self._task = asyncio.current_task()
            await self._open()
            limit = self.svc.settings.max_message_bytes
            while True:
                if self._phase is not Phase.OPEN:
                    # Read nothing more from a client being cut off (the server stops taking its
                    # bytes off the socket); the close ends this task.
                    await asyncio.get_running_loop().create_future()
                message = await self.transport.receive()
                if message["type"] == "websocket.disconnect":
                    self.transport.peer_gone()
                    return
                if self.outbox.closing is not None:
                    continue  # closing after what is queued: read on only to see the peer's close
                data: str | bytes = message.get("text") or message.get("bytes") or ""
                if _too_big(data, limit):
                    client_noise.note(
                        "message_too_big",
                        f"closed a client that sent over {limit} bytes (1009)",
                    )
                    self._close_now(status.WS_1009_MESSAGE_TOO_BIG, f"over {limit} bytes")
                    continue
                cost = cost_of(len(data))
                if not self.bucket.take(cost):
                    # A dropped message is paid for too (as debt): sending over the budget only
                    # digs deeper, until the flood rule below closes the connection.
                    self.bucket.charge(cost)
                    self.dropped += 1
                    if self.dropped == 1:
                        self._send(
                            protocol.error(
                                "rate_limited", "too many messages; slow down", retry=True
                            )
                        )
                    if self.dropped > FLOOD_TOLERANCE:
                        client_noise.note(
                            "message_flood", "closed a client flooding messages (1008)"
                        )
                        self._close_now(status.WS_1008_POLICY_VIOLATION, "message flood")
                    continue
                self.dropped = 0
                self._replied = 0
                await self._handle(data)
                extra = cost_of(self._replied) - cost_of(len(data))
                if extra > 0:  # a reply larger than its request is paid for too
                    self.bucket.charge(extra)
        except asyncio.CancelledError:
            # Swallowed only when `_end` alone cancelled us: the connection is over, not the server.
            if self._phase is not Phase.ENDED or self._task is None or self._task.uncancel() > 0:
                raise
        finally:
            await self._cleanup()

    async def _open(self) -> None:
        """Attach to the hub, greet, subscribe to the URL's symbols, then attach alerts (the
        cookie is read now; the inbox read never holds the first prices back)."""
        hub, settings = self.svc.hub, self.svc.settings
        self.outbox.on_owed = self._pump
        hub.attach(self.outbox)
        self._attached = True
        if hub.draining:  # the drain began while this upgrade was being accepted
            self.outbox.offer_control(self.outbox.fmt.reconnect(0))
            self.outbox.close_after(status.WS_1012_SERVICE_RESTART, "server restarting")
        if self.json:
            self.outbox.offer_control(protocol.welcome(
                int(time.time() * 1000), settings.replica_id,
                settings.max_symbols_per_connection, settings.max_message_bytes,
                settings.heartbeat_interval, hub.current_status().state,
            ))  # fmt: skip
            if hub.current_status().state != "live" or hub.feed_status.reason:
                self.outbox.offer_control(self.outbox.fmt.status(hub.current_status()))
        else:
            self.outbox.offer_control(self.outbox.fmt.status(hub.current_status()))
        initial = self.ws.query_params.get("symbols")
        if initial:
            await self._subscribe(tuple(initial.split(",")), None)
        self._owner = await alerts.attach(self.ws, self.outbox)  # prices first, then the inbox
        # Nothing reads the upgrade request again (the client key, the origin and the alerts
        # cookie were read from it): it is not kept for the connection's life.
        self.transport.forget_handshake()

    async def _cleanup(self) -> None:
        """Detach from everything, stop the writer, give the client's connection slot back."""
        try:
            self._phase = Phase.ENDED  # from here on, nothing cancels this task on our behalf
            self.outbox.on_owed = None
            if self._attached:
                self.svc.hub.detach(self.outbox)
            alerts.detach(self.ws, self._owner, self.outbox)
            self.outbox.clear()  # nothing queued outlives the connection, even in a cycle
            self.outbox.sink = None
            self.transport.release()
            writer = self._writer
            if writer is not None:
                writer.cancel()
                await asyncio.wait([writer])
                # A writer cancelled before its first step never ran its `finally`: its
                # CancelledError's traceback holds this connection, which must not hold it back
                # (a cycle that GC_TUNING's freeze would keep for good).
                self._writer = None
        finally:
            self.svc.clients.close(self.client)

    async def _handle(self, data: str | bytes) -> None:
        try:
            request = protocol.parse_request(data)
        except protocol.ProtocolError as exc:
            self._send(protocol.error(exc.code, exc.message, request_id=exc.request_id))
            return
        if request.action == "ping":
            self._send(protocol.pong(request.t, int(time.time() * 1000), request.request_id))
        elif request.action == "subscribe":
            await self._subscribe(request.symbols, request.request_id, len(data))
        else:
            limit = self.svc.settings.max_symbols_per_connection
            review = protocol.review_unsubscribe(request.symbols, self.outbox.symbols, limit)
            self.svc.hub.subscriptions.unwatch(self.outbox, review.accepted)
            self._send(
                protocol.reviewed(
                    "unsubscribed", review, self.outbox.symbols, request.request_id, len(data)
                )
            )

    async def _subscribe(
        self, raw: tuple[str, ...], request_id: str | int | None, request_bytes: int = 0
    ) -> None:
        hub, settings = self.svc.hub, self.svc.settings
        review = protocol.review_subscribe(
            raw, self.outbox.symbols, settings.max_symbols_per_connection,
            hub.acceptance.reason,
        )  # fmt: skip
        # Warm the hub's cache from the shared store; from here on nothing awaits, so no update
        # can slip between the snapshot and the subscription.
        await hub.snapshot(review.accepted)
        hub.subscriptions.watch(self.outbox, review.accepted)
        self._send(
            protocol.reviewed("subscribed", review, self.outbox.symbols, request_id, request_bytes)
        )
        if not self.json:
            # Pages get no acknowledgements, but a symbol known to be unpriceable must not wait
            # for data forever: its row in the rejected state, as when the fetcher found out.
            # (At most one row per distinct symbol read, and the client pays for their bytes.)
            for item in review.rejected:
                if item["code"] == "unknown_symbol":
                    row = self.outbox.fmt.rejected(
                        item["symbol"], item["reason"], self.svc.feed.name
                    )
                    self._replied += len(row or b"")
                    self.outbox.offer_control(row)
        # The snapshot is part of the reply the client pays for (a subscribe and unsubscribe
        # repeated would otherwise draw a snapshot each time for the price of a small message).
        self._replied += hub.offer_snapshot(self.outbox, review.accepted)

    def _send(self, message: bytes) -> None:
        if self.json:
            self._replied += len(message)
            self.outbox.offer_control(message)

    def _pump(self) -> None:
        """Something is owed: write it now if the socket takes it, else start the writer."""
        if self._phase is Phase.ENDED:
            return
        if self.outbox.overflowed:
            if self._phase is Phase.OPEN:
                client_noise.note(
                    "slow_consumer", "closed a client whose queue passed its bound (1013)"
                )
                self.svc.hub.slow_closes += 1
                self._close_now(status.WS_1013_TRY_AGAIN_LATER, "too slow")
            return
        if self._writer is not None:
            return  # the running writer sends it before it ends
        written, done = self.outbox.write_owed_now()
        if written:
            self._sent_fast(written)
        if not done:
            self._writer = asyncio.get_running_loop().create_task(self._write_owed())

    def _sent_fast(self, frames: int) -> None:
        self.svc.hub.frames_fast += frames
        self._time_batch()

    def _time_batch(self) -> None:
        """Record the fan-out lag of the batch of live quotes just sent, if one was."""
        if self.outbox.batch_published_at:
            self.svc.hub.fanout.fanout_lag.observe(
                max(0.0, time.time() - self.outbox.batch_published_at / 1000)
            )

    def _close_now(self, code: int, reason: str) -> None:
        """Close a client that broke a rule (a flood, a message too big, a queue past its
        bound) within seconds: stop reading it, stop a writer that may be waiting on a send it
        never takes, give what is still queued (if its bound was not passed) `CLOSE_TIMEOUT`
        to go out, then close."""
        if self._phase is not Phase.OPEN:
            return
        self._phase = Phase.CUTTING_OFF
        self.outbox.closing = (code, reason)
        self._writer = asyncio.get_running_loop().create_task(self._close_after(self._writer))

    async def _close_after(self, writer: asyncio.Task[None] | None) -> None:
        if writer is not None:
            writer.cancel()
            await asyncio.wait([writer])
        if self.outbox.overflowed:
            self.outbox.clear()  # what was queued since the overflow is not sent either
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                for message in self.outbox.drain():
                    await self.transport.send(message)
        except (TimeoutError, WebSocketDisconnect, OSError, RuntimeError):
            pass  # it was not reading: the close below gives up on it too
        assert self.outbox.closing is not None
        await self._close(*self.outbox.closing)

    async def _write_owed(self) -> None:
        """Send what is owed with awaited sends (their timeout closes a client that stopped
        reading with 1013), close if a close was asked for, and end once nothing is owed."""
        outbox = self.outbox
        try:
            while self._phase is not Phase.ENDED and not outbox.overflowed:  # see _close_now
                if not await self._transmit(outbox.drain()):
                    self._end()
                    return
                self._time_batch()
                if outbox.owes():
                    continue
                if outbox.closing is not None:
                    # Whatever was queued before the close was asked for has gone out.
                    await self._close(*outbox.closing)
                    return
                return
        except Exception:
            log.exception("a connection's writer failed; closing it")
            self._end()
        finally:
            if self._writer is asyncio.current_task():
                self._writer = None

    async def _transmit(self, messages: list[bytes]) -> bool:
        """Send `messages`; False when the connection is done (peer gone, or closed as too
        slow)."""
        timeout = self.svc.settings.send_timeout
        outbox, hub, transport = self.outbox, self.svc.hub, self.transport
        for message in messages:
            if transport.write_now(message):
                hub.frames_fast += 1
                continue
            outbox.sending = True
            try:
                async with asyncio.timeout(timeout):
                    await transport.send(message)
            except TimeoutError:
                client_noise.note(
                    "slow_consumer", f"closed a client that read nothing for {timeout:g}s (1013)"
                )
                hub.slow_closes += 1
                if self._phase is Phase.OPEN:  # an overflow meanwhile must not close it again
                    self._phase = Phase.CUTTING_OFF
                await self._close(status.WS_1013_TRY_AGAIN_LATER, "too slow")
                return False
            except (WebSocketDisconnect, OSError, RuntimeError):
                return False  # the peer is gone; the reader sees the disconnect
            finally:
                outbox.sending = False
            hub.frames_sent += 1
        return True

    async def _close(self, code: int, reason: str) -> None:
        """Close with `code`, then stop reading (not waiting for the peer's close reply). A peer
        that reads nothing cannot even take the close frame: its connection is aborted."""
        try:
            if self.transport.connected:
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await self.transport.close(code, reason)
        except TimeoutError:
            self.transport.abort()
        except (WebSocketDisconnect, OSError, RuntimeError):
            pass
        self._end()

    def _end(self) -> None:
        if self._phase is not Phase.ENDED:
            self._phase = Phase.ENDED
            if self._task is not None and self._task is not asyncio.current_task():
                self._task.cancel()


class WebSocketShortcut:
    """Pure ASGI middleware, outermost: a `/ws` upgrade goes straight to `websocket_endpoint`.

    Through the router it would pass the security-headers and exception middlewares, the route
    match and Starlette's session wrappers: frames that every connection keeps for its whole life
    (about 2 KB each) and work that a reconnect storm repeats 10,000 times. None of them does
    anything for a WebSocket here. Everything else goes on to the app unchanged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Returns the awaitable (as app.gate.AccessGate does): no frame of this is kept.
        if scope["type"] == "websocket" and scope["path"] == "/ws":
            return connect(WebSocket(scope, receive, send))
        return self.app(scope, receive, send)


class LeanStarlette(Starlette):
    """Starlette, except that a WebSocket skips `ServerErrorMiddleware`, which for anything but
    HTTP only awaits the next app: one coroutine frame that every connection kept for its whole
    life. HTTP is served exactly as by Starlette. (`__call__` stays a coroutine function:
    uvicorn tells ASGI 3 from ASGI 2 by it.)"""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = self
        if self.middleware_stack is None:
            self.middleware_stack = self.build_middleware_stack()
        stack = self.middleware_stack
        if scope["type"] == "websocket" and isinstance(stack, ServerErrorMiddleware):
            stack = stack.app
        await stack(scope, receive, send)


async def _refuse(ws: WebSocket, status_code: int) -> None:
    """Answer the upgrade with a plain HTTP error, where the server supports that; else 403."""
    try:
        await ws.send_denial_response(Response(status_code=status_code))
    except RuntimeError:
        await ws.close(code=status.WS_1013_TRY_AGAIN_LATER)


def _too_big(data: str | bytes, limit: int) -> bool:
    if len(data) > limit:
        return True
    # A str is counted in UTF-8 bytes, as on the wire; up to 4 bytes per character.
    return isinstance(data, str) and len(data) * 4 > limit and len(data.encode()) > limit
