"""Query parsing shared by the endpoints: `symbols`, `format` and the long-poll `cursor`.

Bad input is the client's mistake: an `ApiError` (rendered as 400 `{"error": {"code",
"message"}}` by app.endpoints.api), never a 500.
"""

from __future__ import annotations

import base64
import binascii

import orjson
from starlette.requests import HTTPConnection

from app.services import Services
from app.symbols import parse_symbol_list

WIRE_FORMATS = ("json", "html")


class ApiError(Exception):
    """A client mistake on the HTTP API; rendered as 400 `{"error": {"code", "message"}}`."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def wire_format_name(conn: HTTPConnection) -> str | None:
    """The `format` query parameter (`json` by default); None when it names no wire format."""
    name = conn.query_params.get("format", "json")
    return name if name in WIRE_FORMATS else None


# An error lists the first few bad symbols, so its size never grows with the request.
MAX_PROBLEMS_SHOWN = 5


def parse_symbols(
    request: HTTPConnection, svc: Services, default: tuple[str, ...] | None = None
) -> tuple[list[str], list[dict[str, str]]]:
    """The `symbols` query parameter: (valid known symbols, [{symbol, code, reason}] unknown).

    Syntax errors and too many symbols are the caller's mistake (400); a well-formed symbol the
    feed does not know is reported back, like on the WebSocket.
    """
    raw = request.query_params.get("symbols")
    if raw is None or not raw.strip():
        if default is None:
            raise ApiError(
                "missing_symbols", "query parameter 'symbols' is required, e.g. ?symbols=TCS,INFY"
            )
        return list(default), []
    limit = svc.settings.max_symbols_per_connection
    parsed = parse_symbol_list(raw, max_parts=limit)
    if parsed.unread:
        given = limit + parsed.unread
        raise ApiError("too_many_symbols", f"at most {limit} symbols per request ({given} given)")
    if parsed.problems:
        shown = parsed.problems[:MAX_PROBLEMS_SHOWN]
        more = len(parsed.problems) - len(shown)
        raise ApiError("invalid_symbol", "; ".join(shown) + (f"; and {more} more" if more else ""))
    symbols = parsed.symbols
    rejected: list[dict[str, str]] = []
    known: list[str] = []
    for symbol in symbols:
        reason = svc.hub.acceptance.reason(symbol)
        if reason is None:
            known.append(symbol)
        else:
            rejected.append({"symbol": symbol, "code": "unknown_symbol", "reason": reason})
    return known, rejected


MAX_CURSOR_LENGTH = 16 * 1024
# The long-poll cursor, opaque to clients: base64url JSON of `[[symbol, epoch, seq], ...]`.
Cursor = dict[str, tuple[int, int]]
TOLD_REJECTED = (-1, -1)  # the cursor's entry for a symbol whose rejection the client was told


def encode_cursor(cursor: Cursor) -> str:
    items = [[symbol, epoch, seq] for symbol, (epoch, seq) in sorted(cursor.items())]
    return base64.urlsafe_b64encode(orjson.dumps(items)).decode().rstrip("=")


def decode_cursor(text: str) -> Cursor:
    if not text:
        return {}
    if len(text) > MAX_CURSOR_LENGTH:
        raise ApiError("bad_cursor", "cursor is too long")
    try:
        items = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError):
        raise ApiError("bad_cursor", "cursor is not one this server issued") from None
    cursor: Cursor = {}
    if not isinstance(items, list):
        raise ApiError("bad_cursor", "cursor is not one this server issued")
    for item in items:
        if not (
            isinstance(item, list)
            and len(item) == 3
            and isinstance(item[0], str)
            and all(isinstance(n, int) and not isinstance(n, bool) for n in item[1:])
        ):
            raise ApiError("bad_cursor", "cursor is not one this server issued")
        cursor[item[0]] = (item[1], item[2])
    return cursor
