"""A wire format's batch message as bytes around already-encoded quotes (the fan-out's payloads)."""

from __future__ import annotations

from collections.abc import Sequence

from app.core.wire import WireFormat


class Envelope:
    """A format's batch message as bytes around the quote texts: prefix, separator, suffix.

    Taken from the format's own `frame` (built around placeholders), so the wire layout has
    one definition; `WireFormat.frame` is a plain concatenation, which is what makes this work.
    """

    __slots__ = ("one", "many")

    def __init__(self, fmt: WireFormat) -> None:
        one = fmt.frame("batch", [b"\0"]).split(b"\0")
        many = fmt.frame("batch", [b"\0", b"\0"]).split(b"\0")
        self.one = (one[0], one[1])
        self.many = (many[0], many[1], many[2])

    def payload(self, texts: Sequence[bytes]) -> bytes:
        """The batch message carrying `texts`."""
        if len(texts) == 1:
            prefix, suffix = self.one
            return b"".join((prefix, texts[0], suffix))
        prefix, sep, suffix = self.many
        return b"".join((prefix, sep.join(texts), suffix))
