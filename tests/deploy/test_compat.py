"""The start-up check of the uvicorn internals our protocol classes build on (app/compat.py).

On the tested versions nothing is missing; a class without what we use is reported by name. The
`lowest` test runs only under `make test-lowest`, which installs uvicorn 0.52.0 (just below the
floor: no `disconnected`, no WebSocket flow control) and expects the real fallback.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from app import compat
from tests.support import AppServer, eventually, quotes_in, recv_json


def test_the_installed_uvicorn_has_everything_when_it_is_in_range() -> None:
    import uvicorn

    if tuple(int(x) for x in uvicorn.__version__.split(".")[:3]) < (0, 52, 1):
        pytest.skip(f"uvicorn {uvicorn.__version__} is below the floor (make test-lowest)")
    assert compat.missing(compat.FAST_PATH) == []
    assert compat.missing(compat.HTTP_LIMITS) == []


class Bare(asyncio.Protocol):
    """A protocol class with none of uvicorn's internals."""

    def __init__(self, **kwargs: Any) -> None:
        pass

    def data_received(self, data: bytes) -> None:
        pass


BareProtocol = Bare  # `Needs` finds classes by module and name


def test_missing_pieces_are_named() -> None:
    needs = compat.Needs(
        module=__name__,
        cls="BareProtocol",
        methods=("data_received", "handle_connect"),
        attributes=("conn", "writable"),
        overridden=("pause_writing",),
        names=("STATUS_LINE",),
    )
    where = f"{__name__}.BareProtocol"
    assert compat.missing(needs) == [
        f"{__name__}.STATUS_LINE",
        f"{where}.handle_connect",
        f"{where}.pause_writing",
        f"{where}().conn",
        f"{where}().writable",
    ]
    gone = compat.Needs(module="uvicorn.protocols.websockets.nowhere", cls="X", methods=(),
                        attributes=())  # fmt: skip
    [line] = compat.missing(gone)
    assert line.startswith("uvicorn.protocols.websockets.nowhere (")


@pytest.mark.lowest
async def test_below_the_floor_the_app_serves_websockets_on_the_plain_path() -> None:
    missing = compat.missing(compat.FAST_PATH)
    assert missing, "this uvicorn has the fast path's internals: run by make test-lowest only"
    server = AppServer()
    server.start()
    try:
        log = server.log()
        assert log.count("WebSocket fast path off") == 1, log
        assert "disconnected" in log
        async with connect(f"{server.ws_url}?symbols=TCS") as ws:
            while not quotes_in(await recv_json(ws)):
                pass

        async with httpx.AsyncClient(base_url=server.base, timeout=5) as http:

            async def plain_frames() -> bool:
                text = (await http.get("/metrics")).text
                return 'path="asgi"' in text and not _zero(text, 'path="asgi"')

            await eventually(plain_frames, 10, "frames written on the ASGI path")
            # The HTTP limits (no fallback) still hold on this version.
            assert (await http.get("/api/quotes?" + "x" * 9000)).status_code == 414
    finally:
        server.stop()


def _zero(text: str, label: str) -> bool:
    for line in text.splitlines():
        if line.startswith("stocktracker_frames_sent_total") and label in line:
            return float(line.rsplit(" ", 1)[1]) == 0
    return True
