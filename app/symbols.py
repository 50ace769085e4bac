"""Symbol syntax: what a ticker may look like before any feed is asked about it.

A symbol is 1-24 characters after trimming and upper-casing: letters, digits, and `. & : / _ -`
and single inner spaces (so `NIFTY 50`, `M&M`, `BRK.B`, `RELIANCE:NSE`, `EUR/USD` are valid and
`<script>` is not). Whether a valid symbol is *known* is the feed's business.
"""

from __future__ import annotations

import re

MAX_SYMBOL_LENGTH = 24
_PATTERN = re.compile(r"[A-Z0-9](?:[A-Z0-9.&:/_\-]| (?! ))*")
_DOM_SAFE = re.compile(r"[^A-Za-z0-9\-]")


class InvalidSymbol(ValueError):
    """The text cannot be a symbol; the message says why, for the client."""


def normalize_symbol(raw: str) -> str:
    """Return the canonical form of `raw` or raise `InvalidSymbol`."""
    symbol = raw.strip().upper()
    if not symbol:
        raise InvalidSymbol("symbol is empty")
    if len(symbol) > MAX_SYMBOL_LENGTH:
        raise InvalidSymbol(f"symbol is longer than {MAX_SYMBOL_LENGTH} characters")
    if not _PATTERN.fullmatch(symbol):
        raise InvalidSymbol("symbol may hold only letters, digits, single spaces and . & : / _ -")
    return symbol


def dom_id(symbol: str) -> str:
    """An HTML id fragment for `symbol`: injective, so `NIFTY 50` and `NIFTY_50` never collide."""
    return _DOM_SAFE.sub(lambda m: f"_{ord(m.group()):02x}", symbol)


def parse_symbol_list(raw: str, *, skip_empty: bool = False) -> tuple[list[str], list[str]]:
    """Comma-separated symbols: the valid ones normalised and de-duplicated, in order, and one
    problem text (`'<b>': reason`) per part that is not a symbol (empty parts too, unless
    `skip_empty`)."""
    symbols: list[str] = []
    problems: list[str] = []
    for part in raw.split(","):
        if skip_empty and not part.strip():
            continue
        try:
            symbol = normalize_symbol(part)
        except InvalidSymbol as exc:
            problems.append(f"{part.strip()[:32]!r}: {exc}")
            continue
        if symbol not in symbols:
            symbols.append(symbol)
    return symbols, problems
