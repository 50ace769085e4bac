"""The fast path and its framing, against the real uvicorn and websockets they build on."""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Callable
from typing import Any

import pytest
import uvicorn.protocols.websockets.websockets_sansio_impl as sansio
from uvicorn.config import Config
from uvicorn.server import ServerState
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol

from app.ws.fastpath import ABORT, EXTENSION, WATCH_DIRECT, Direct, FastProtocol
from app.ws.framing import text_frame
from app.ws.primitives import Flag, Inbox


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 100_000])
def test_text_frame_is_websockets_own_unmasked_text_frame(size: int) -> None:
    text = ("é" * size)[: size // 2] + "x" * (size - size // 2)
    expected = Frame(Opcode.TEXT, text.encode()).serialize(mask=False)
    assert text_frame(text.encode()) == expected


# ---- the fast path on uvicorn's real protocol object, without a server ----------------------

HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\nHost: testserver\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


class Wire(asyncio.Transport):
    """The socket side: what uvicorn wrote, and whether it was aborted."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.aborted = self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )


def upgraded(app: Any) -> tuple[FastProtocol, Wire]:
    """Our protocol on a connection whose peer sent the upgrade request to `app`."""
    config = Config(app, ws=FastProtocol, lifespan="off", log_config=None)
    config.load()
    protocol = FastProtocol(config, ServerState(), {}, asyncio.get_running_loop())
    wire = Wire()
    protocol.connection_made(wire)
    protocol.data_received(HANDSHAKE)
    return protocol, wire


async def test_the_fast_path_writes_what_uvicorn_itself_would_and_declines_when_it_must() -> None:
    """Fails when the uvicorn internals the fast path reads (handshake, flow control, close
    state, the scope's extensions, the queue and flag it swaps for lighter ones) change."""
    sent = asyncio.Event()
    closing = asyncio.Event()
    scopes: list[dict[str, Any]] = []
    taken: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        scopes.append(scope)
        taken.update(scope["extensions"])  # before accepting, as app.ws.transport does
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "héllo"})  # uvicorn's own framing
        sent.set()
        await closing.wait()
        await send({"type": "websocket.close", "code": 1000})

    protocol, wire = upgraded(app)
    await asyncio.wait_for(sent.wait(), 5)
    assert wire.written[0].startswith(b"HTTP/1.1 101")
    assert wire.written[-1] == text_frame("héllo".encode())  # our framing is uvicorn's

    # Memory per idle connection (FastProtocol.send): websockets parses with its frame parser
    # only, not through the handshake parser that kept the request, and no header is kept.
    assert protocol.conn.parser.gi_code is Protocol.parse.__code__  # type: ignore[attr-defined]
    assert "request" not in protocol.__dict__ and "response" not in protocol.__dict__
    assert len(protocol.__dict__) < 30  # CPython's shared-key dict (see the test below)
    # Once the handshake is over the scope offers them no more (nor holds this protocol).
    assert EXTENSION not in scopes[0]["extensions"] and ABORT not in scopes[0]["extensions"]
    write: Callable[[bytes], bool] = taken[EXTENSION]
    # The direct write (what the fan-out calls): the transport's own write, exactly while
    # write_frame would write, and its watcher is told each change at once.
    told: list[Direct | None] = []
    taken[WATCH_DIRECT](told.append)
    assert told == [wire.write]
    assert write(text_frame(b"fast")) and wire.written[-1] == text_frame(b"fast")
    protocol.pause_writing()  # flow control: the socket's buffer is full
    assert not write(text_frame(b"paused")) and wire.written[-1] == text_frame(b"fast")
    assert told[-1] is None
    protocol.resume_writing()
    assert write(text_frame(b"again")) and told[-1] == wire.write

    closing.set()
    await asyncio.sleep(0)
    for _ in range(100):
        if protocol.close_sent:
            break
        await asyncio.sleep(0.01)
    assert protocol.close_sent and not write(text_frame(b"after close"))
    assert told[-1] is None and len(told) == 4  # told once per change, never in between
    taken[ABORT]()
    assert wire.aborted
    protocol.connection_lost(None)
    # The scope no longer holds the protocol through our bound methods (no cycle).
    assert EXTENSION not in scopes[0]["extensions"] and ABORT not in scopes[0]["extensions"]
    await asyncio.sleep(0)


@pytest.mark.parametrize("how", ["peer closes", "peer vanishes", "server shuts down"])
async def test_the_direct_write_goes_the_moment_the_connection_stops_taking_frames(
    how: str,
) -> None:
    """However a connection ends, the watcher hears None before anything else can write."""
    accepted = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        watch = scope["extensions"][WATCH_DIRECT]
        await receive()
        watch(told.append)
        await send({"type": "websocket.accept"})
        accepted.set()
        await receive()

    told: list[Direct | None] = []
    protocol, wire = upgraded(app)
    await asyncio.wait_for(accepted.wait(), 5)
    assert told == [None, wire.write]
    if how == "peer closes":
        protocol.data_received(Frame(Opcode.CLOSE, b"\x03\xe8").serialize(mask=True))
    elif how == "peer vanishes":
        protocol.connection_lost(ConnectionResetError())
    else:
        protocol.shutdown()
    assert told[-1] is None and not protocol.write_frame(b"x")
    if how != "peer vanishes":
        protocol.connection_lost(None)
    await asyncio.sleep(0)


# Where uvicorn's protocol changes what write_frame checks (the handshake, the close, the
# socket's state, flow control), and the hook of ours that re-checks it (FastProtocol._gate):
# an override of that method, or of the one uvicorn calls it from.
GATED = {
    "connection_lost": "connection_lost",
    "pause_writing": "pause_writing",
    "resume_writing": "resume_writing",
    "shutdown": "shutdown",
    "keepalive_timeout": "keepalive_timeout",
    "run_asgi": "run_asgi",
    "send": "send",
    "handle_connect": "data_received",
    "handle_close": "data_received",
    "handle_parser_exception": "data_received",
    "send_receive_event_to_app": "data_received",
}


def test_every_way_uvicorn_changes_the_write_state_is_followed_by_a_gate() -> None:
    """Fails when uvicorn gains (or moves) a place that changes the state write_frame reads:
    the direct write would then outlive it. Each must be one FastProtocol re-checks after."""
    source = inspect.getsource(sansio.WebSocketsSansIOProtocol)
    changes = re.compile(
        r"self\.(handshake_complete|close_sent|disconnected) = |self\.writable\.(set|clear)\("
        r"|self\.transport\.(close|abort)\b|self\.conn\.(send_close|fail)\("
    )
    found = set()
    for match in re.finditer(
        r"\n    (?:async )?def (\w+)\(.*?(?=\n    (?:async )?def |\Z)", source, re.S
    ):
        if changes.search(match.group(0)):
            found.add(match.group(1))
    found.discard("__init__")
    assert found == set(GATED)
    ours = inspect.getsource(FastProtocol)
    for hook in set(GATED.values()):
        body = re.search(
            rf"\n    (?:async )?def {hook}\(.*?(?=\n    (?:async )?def |\Z)", ours, re.S
        )
        assert body and "self._gate()" in body.group(0), hook


def test_uvicorn_uses_nothing_of_its_queue_and_event_that_our_lighter_ones_lack() -> None:
    """FastProtocol swaps uvicorn's per-connection asyncio.Queue and Event (`self.queue`,
    `self.writable`) for app.ws.primitives' Inbox and Flag: every method uvicorn's protocol calls
    on them must exist there, with the same meaning (tests/ws/test_primitives.py)."""
    source = inspect.getsource(sansio)
    used = {
        "queue": set(re.findall(r"self\.queue\.(\w+)", source)),
        "writable": set(re.findall(r"self\.writable\.(\w+)", source)),
    }
    assert used["queue"] and used["writable"]  # the pattern still finds them
    assert {name for name in used["queue"] if not hasattr(Inbox, name)} == set()
    assert {name for name in used["writable"] if not hasattr(Flag, name)} == set()
    # ... and nothing else replaces them after __init__.
    for name in ("queue", "writable"):
        assert len(re.findall(rf"self\.{name}\s*(?::[^=\n]*)?=(?!=)", source)) == 1, name


def test_what_fastprotocol_keeps_once_per_server_uvicorn_sets_only_in_its_constructor() -> None:
    """FastProtocol keeps some of uvicorn's attributes once per server, not per connection
    (app.ws.fastpath._PerServer): right only while uvicorn assigns each of them once, in
    `__init__`, the same for every connection of a server."""
    source = inspect.getsource(sansio.WebSocketsSansIOProtocol)
    init = inspect.getsource(sansio.WebSocketsSansIOProtocol.__init__)
    shared = [n for n, v in vars(FastProtocol).items() if type(v).__name__ == "_PerServer"]
    assert len(shared) >= 10
    for name in shared:
        assignment = rf"self\.{name}\s*(?::[^=\n]*)?=(?!=)"
        assert len(re.findall(assignment, source)) == 1, name
        assert len(re.findall(assignment, init)) == 1, name


async def test_connections_of_two_servers_keep_their_own_per_server_attributes() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover
        pass

    loop = asyncio.get_running_loop()
    configs = [Config(app, ws=FastProtocol, lifespan="off", log_config=None) for _ in range(2)]
    protocols = []
    for config in configs:
        config.load()
        protocols.append(FastProtocol(config, ServerState(), {}, loop))
    first, second = protocols
    assert first.config is configs[0] and second.config is configs[1]
    assert first.connections is not second.connections
    # ... and the instance's own dict stays within CPython's shared-key limit (30 keys).
    assert "config" not in first.__dict__ and len(first.__dict__) < 30
