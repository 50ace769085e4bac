"""Are the uvicorn internals our two protocol classes build on really there? Checked at start.

`app.ws.fastpath.FastProtocol` subclasses uvicorn's `WebSocketsSansIOProtocol` and reads its
per-connection state (`conn`, `queue`, `writable` with real flow control, `close_sent`,
`disconnected`, ...); `app.http_limits.LimitedHttpProtocol` subclasses `HttpToolsProtocol` and
overrides its parser callbacks and pipelining. These are private to uvicorn and change between
releases (`disconnected` and the WebSocket flow control arrived in 0.52.1), so pyproject.toml
allows only the tested minor releases; this check catches an install that ignored the bounds.

What each missing piece costs (see app/launch.py): without the fast path's internals the app
serves `/ws` on uvicorn's plain ASGI path (slower, same protocol) and says so in one ERROR line;
without the HTTP protocol's there is no safe fallback (the request limits are a security bound),
so the start is refused with one line naming what is missing.
"""

from __future__ import annotations

import asyncio
import importlib
from dataclasses import dataclass
from typing import Any

from uvicorn.config import Config
from uvicorn.server import ServerState


@dataclass(frozen=True, slots=True)
class Needs:
    """A uvicorn protocol class and what our subclass uses of it."""

    module: str
    cls: str
    methods: tuple[str, ...]
    # Set by the base class's __init__ (checked on a real instance).
    attributes: tuple[str, ...]
    # Module-level names besides the class.
    names: tuple[str, ...] = ()
    # Methods that must be the class's own, not asyncio.BaseProtocol's no-op defaults.
    overridden: tuple[str, ...] = ()
    # The `--ws` / `--http` value that selects the base class in uvicorn's Config.
    selector: str = ""


FAST_PATH = Needs(
    module="uvicorn.protocols.websockets.websockets_sansio_impl",
    cls="WebSocketsSansIOProtocol",
    methods=("data_received", "handle_connect", "connection_lost", "send", "receive"),
    attributes=(
        "conn",
        "queue",
        "writable",
        "handshake_complete",
        "close_sent",
        "disconnected",
        "read_paused",
    ),
    overridden=("pause_writing", "resume_writing"),
    selector="websockets-sansio",
)
HTTP_LIMITS = Needs(
    module="uvicorn.protocols.http.httptools_impl",
    cls="HttpToolsProtocol",
    methods=(
        "data_received", "connection_made", "connection_lost", "handle_websocket_upgrade",
        "on_message_begin", "on_url", "on_header", "on_headers_complete", "on_body",
        "on_message_complete", "_unset_keepalive_if_required", "_should_upgrade",
    ),
    attributes=("parser", "pipeline", "cycle", "server_state", "transport", "flow"),
    names=("STATUS_LINE", "RequestResponseCycle"),
    selector="httptools",
)  # fmt: skip


def missing(needs: Needs) -> list[str]:
    """What of `needs` this uvicorn lacks (`module.Class.name` strings); empty if nothing."""
    try:
        module = importlib.import_module(needs.module)
    except ImportError as exc:
        return [f"{needs.module} ({exc})"]
    where = f"{needs.module}.{needs.cls}"
    cls = getattr(module, needs.cls, None)
    if not isinstance(cls, type):
        return [where]
    gone = [f"{needs.module}.{name}" for name in needs.names if not hasattr(module, name)]
    gone += [f"{where}.{name}" for name in needs.methods if not callable(getattr(cls, name, None))]
    for name in needs.overridden:
        if getattr(cls, name, None) is getattr(asyncio.BaseProtocol, name, None):
            gone.append(f"{where}.{name}")
    try:
        instance = _instance(cls, needs.selector)
    except Exception as exc:  # a changed constructor is as fatal as a missing attribute
        return [*gone, f"{where}() ({type(exc).__name__}: {exc})"]
    gone += [f"{where}().{name}" for name in needs.attributes if not hasattr(instance, name)]
    return gone


async def _noop(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover
    pass


def _instance(cls: type, selector: str) -> object:
    """One protocol object, built as uvicorn builds it for a connection (not connected)."""
    options: dict[str, Any] = {"lifespan": "off", "log_config": None, "log_level": None}
    if selector:
        options["ws" if "websockets" in selector else "http"] = selector
    config = Config(_noop, **options)
    config.load()
    loop = asyncio.new_event_loop()
    try:
        return cls(config=config, server_state=ServerState(), app_state={}, _loop=loop)
    finally:
        loop.close()
