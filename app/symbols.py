"""Symbol syntax: what a ticker may look like before any feed is asked about it.

A symbol is 1-24 characters after trimming and upper-casing: letters, digits, and `. & : / _ -`
and single inner spaces (so `NIFTY 50`, `M&M`, `BRK.B`, `RELIANCE:NSE`, `EUR/USD` are valid and
`<script>` is not). Whether a valid symbol is *known* is the feed's business.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class SymbolList:
    """What a comma-separated list held, read up to a cap (see `parse_symbol_list`)."""

    symbols: list[str]  # valid, normalised, de-duplicated, in order
    problems: list[str]  # one `'<part>': reason` per part read that is not a symbol
    unread: int  # parts past the cap, never looked at


def parse_symbol_list(raw: str, *, max_parts: int, skip_empty: bool = False) -> SymbolList:
    """Comma-separated symbols, examining at most `max_parts` parts (empty ones included, even
    with `skip_empty`, which only keeps them from being reported as problems); the rest is only
    counted, by one scan in C. A list of any length costs what `max_parts` of them do, plus
    that scan (the request limits bound the text anyway)."""
    parts = raw.split(",", max_parts)  # the last piece holds everything past the cap, unsplit
    unread = parts.pop().count(",") + 1 if len(parts) > max_parts else 0
    symbols: list[str] = []
    seen: set[str] = set()
    problems: list[str] = []
    for part in parts:
        if skip_empty and not part.strip():
            continue
        try:
            symbol = normalize_symbol(part)
        except InvalidSymbol as exc:
            problems.append(f"{part.strip()[:32]!r}: {exc}")
            continue
        if symbol not in seen:
            seen.add(symbol)
            symbols.append(symbol)
    return SymbolList(symbols, problems, unread)
