"""The two wire formats (implementations of app.core.wire.WireFormat): `json` and `html`.

`json` speaks docs/protocol.md. `html` is for htmx pages: the very `_quote_row.html` partial the
pages render, with `hx-swap-oob`, so what htmx swaps in is byte-for-byte what a reload would show
(a rejected symbol's row included); no acknowledgements.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import orjson

from app import protocol
from app.core.wire import FrameKind
from app.models import FeedStatus, Quote, encode_quote
from app.rendering import Renderer


class JsonFormat:
    name = "json"

    def encode(self, quote: Quote) -> bytes:
        return encode_quote(quote)

    def frame(self, kind: FrameKind, encoded: Sequence[bytes]) -> bytes:
        return protocol.quotes_frame(kind, encoded)

    def status(self, status: FeedStatus) -> bytes:
        return protocol.status(
            status.state, status.reason, status.source, since=status.since,
            retry_after=status.retry_after, detail=status.detail,
        )  # fmt: skip

    def fresh(self, at: int, now: int, stale_after: int, stale: dict[str, int]) -> bytes:
        return protocol.fresh(at, now, stale_after, stale)

    def rejected(self, symbol: str, reason: str, source: str | None) -> bytes:
        return protocol.rejected(symbol, reason, source)

    def reconnect(self, delay_ms: int) -> bytes:
        return protocol.reconnect(delay_ms)


JSON_FORMAT = JsonFormat()


def fresh_template(at: int, now: int, stale_after: int, stale: dict[str, int]) -> bytes:
    """The freshness note for pages: not swapped in; static/js/quotes.js reads it (pages render
    the same element, so a page knows its prices' freshness before its first frame)."""
    attrs = b'data-at="%d" data-now="%d" data-stale-after="%d"' % (at, now, stale_after)
    listed = html.escape(orjson.dumps(stale).decode()).encode()
    return b'<template id="fresh" ' + attrs + b' data-stale="' + listed + b'"></template>'


class HtmlFormat:
    name = "html"

    def __init__(self, renderer: Renderer) -> None:
        self._renderer = renderer

    def encode(self, quote: Quote) -> bytes:
        return self._renderer.quote_row(quote).encode()

    def frame(self, kind: FrameKind, encoded: Sequence[bytes]) -> bytes:
        return b"".join(encoded)

    def status(self, status: FeedStatus) -> bytes:
        return self._renderer.status(status).encode()

    def fresh(self, at: int, now: int, stale_after: int, stale: dict[str, int]) -> bytes:
        return fresh_template(at, now, stale_after, stale)

    def rejected(self, symbol: str, reason: str, source: str | None) -> bytes:
        return self._renderer.rejected_row(symbol, reason, source).encode()

    def reconnect(self, delay_ms: int) -> bytes:
        # Not swapped into the page: static/js/quotes.js reads it and delays its next reconnect.
        return b'<template id="reconnect" data-delay-ms="%d"></template>' % delay_ms
