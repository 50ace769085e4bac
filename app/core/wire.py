"""The wire-format port: how quotes and the core's own messages look on one kind of connection.

Two implementations (app/formats.py): JSON for API clients (the messages of docs/protocol.md)
and HTML for htmx pages (`_quote_row.html` rows swapped out of band). Everything is bytes: a
quote is encoded once per format and those bytes go to every client. The core builds every
message it sends through this port and never parses one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

from app.models import FeedStatus, Quote

FrameKind = Literal["snapshot", "batch"]


class WireFormat(Protocol):
    # Names the format (cohorts and encodings are kept per name).
    name: str

    def encode(self, quote: Quote) -> bytes:
        """One quote, as it appears inside a frame."""
        ...

    def frame(self, kind: FrameKind, encoded: Sequence[bytes]) -> bytes:
        """One message carrying already-encoded quotes. Must be a plain concatenation of a
        prefix, the quotes joined by one separator, and a suffix (the fan-out relies on it)."""
        ...

    def status(self, status: FeedStatus) -> bytes | None:
        """The data state (live, delayed, stale...); None if this format has no such message."""
        ...

    def fresh(self, at: int, now: int, stale_after: int, stale: dict[str, int]) -> bytes:
        """The freshness note (app.core.freshness): prices not in `stale` ({symbol: when last
        confirmed}) were current at `at`; `now` is the server's clock, `stale_after` the age (ms)
        past which a price is not current."""
        ...

    def rejected(self, symbol: str, reason: str, source: str | None) -> bytes | None:
        """The feed cannot price a subscribed symbol (whose subscription ended); None: not told."""
        ...

    def reconnect(self, delay_ms: int) -> bytes | None:
        """The drain notice: reconnect after `delay_ms`; None if this format has none."""
        ...
