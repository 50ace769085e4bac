"""The wire-format port: how quotes and the core's own messages look on one kind of connection.

Two implementations: JSON for API clients (app.rendering.JSON_FORMAT, the messages of
docs/protocol.md) and HTML for htmx pages (`Renderer.html_format`: `_quote_row.html` rows swapped
out of band). The core builds every message it sends through this port and never parses one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from app.models import FeedStatus, Quote

FrameKind = Literal["snapshot", "batch"]


@dataclass(frozen=True, slots=True)
class WireFormat:
    """How quotes look on one kind of connection (JSON for API clients, HTML for htmx pages)."""

    name: str
    encode: Callable[[Quote], str]
    frame: Callable[[FrameKind, Sequence[str]], str]
    # A control message telling the client the data state; None if this format has no such message.
    status: Callable[[FeedStatus], str | None]
    # (symbol, reason, source): the feed cannot price a subscribed symbol; None: not told.
    rejected: Callable[[str, str, str | None], str | None] = lambda symbol, reason, source: None
    # The drain notice ("reconnect after this many ms"); None if this format has none.
    reconnect: Callable[[int], str | None] = lambda delay_ms: None
