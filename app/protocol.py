"""The JSON wire protocol: parsing client requests and building server messages.

Pure functions over bytes; no sockets here, so every rule is unit-tested directly. The contract is
written down in docs/protocol.md; keep the two in step.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from app.symbols import MAX_SYMBOL_LENGTH, InvalidSymbol, normalize_symbol

PROTOCOL_VERSION = 1
MAX_ID_LENGTH = 64

Action = Literal["subscribe", "unsubscribe", "ping"]


class ProtocolError(Exception):
    """A request the server cannot act on; becomes an `error` message, the socket stays open."""

    def __init__(self, code: str, message: str, request_id: str | int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


@dataclass(frozen=True, slots=True)
class Request:
    action: Action
    symbols: tuple[str, ...] = ()
    request_id: str | int | None = None
    # `ping` only: echoed back untouched so the client can measure round-trip time.
    t: Any = None


def parse_request(text: str | bytes) -> Request:
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ProtocolError("bad_json", "message is not valid JSON") from None
    if not isinstance(obj, dict):
        raise ProtocolError("bad_request", "message must be a JSON object")
    request_id = obj.get("id")
    if request_id is not None and not (
        (isinstance(request_id, str) and len(request_id) <= MAX_ID_LENGTH)
        or (isinstance(request_id, int) and not isinstance(request_id, bool))
    ):
        raise ProtocolError(
            "bad_request",
            f"id must be a string of at most {MAX_ID_LENGTH} characters or an integer",
        )
    action = obj.get("action")
    if not isinstance(action, str):
        raise ProtocolError("bad_request", "field 'action' (a string) is required", request_id)
    if action == "ping":
        t = obj.get("t")
        if not (t is None or isinstance(t, int | float | str)) or (
            isinstance(t, str) and len(t) > 64
        ):
            raise ProtocolError(
                "bad_request", "field 't' must be a number or a short string", request_id
            )
        return Request("ping", request_id=request_id, t=t)
    if action not in ("subscribe", "unsubscribe"):
        raise ProtocolError(
            "unknown_action",
            f"unknown action {action[:32]!r}: expected subscribe, unsubscribe or ping",
            request_id,
        )
    symbols = obj.get("symbols")
    if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
        raise ProtocolError("bad_request", "field 'symbols' must be a list of strings", request_id)
    if not symbols:
        raise ProtocolError("bad_request", "field 'symbols' must not be empty", request_id)
    return Request(action, tuple(symbols), request_id)  # type: ignore[arg-type]


@dataclass(slots=True)
class Rejection:
    symbol: str
    code: str
    reason: str
    count: int = 1  # how many items of the request it stands for


@dataclass(slots=True)
class Review:
    """The outcome of a subscribe/unsubscribe: accepted symbols, one rejection per distinct
    (symbol, code) with a count of its repeats, and how many items were never read (past the
    request's cap), so the reply's size follows what the request held, not how long it was."""

    accepted: list[str] = field(default_factory=list)
    rejections: dict[tuple[str, str], Rejection] = field(default_factory=dict)
    unread: int = 0

    def reject(self, symbol: str, code: str, reason: str) -> None:
        found = self.rejections.get((symbol, code))
        if found is None:
            self.rejections[(symbol, code)] = Rejection(symbol, code, reason)
        else:
            found.count += 1

    @property
    def rejected(self) -> list[dict[str, str]]:
        """One `{symbol, code, reason}` per rejection (repeats not shown)."""
        return [
            {"symbol": r.symbol, "code": r.code, "reason": r.reason}
            for r in self.rejections.values()
        ]


def max_request_items(limit: int) -> int:
    """Items of one subscribe/unsubscribe that are read: twice the per-connection limit, which
    leaves an honest client room for a few mistakes; the rest are counted, never examined."""
    return 2 * limit


def _symbols(raw: Sequence[str], limit: int, review: Review) -> Iterator[str]:
    """The request's symbols, normalized, up to `max_request_items` (the rest are counted in
    `review.unread`); an item that is not a symbol is rejected in `review` and skipped."""
    cap = max_request_items(limit)
    if len(raw) > cap:
        review.unread = len(raw) - cap
        raw = raw[:cap]
    for item in raw:
        try:
            yield normalize_symbol(item)
        except InvalidSymbol as exc:
            review.reject(item[: MAX_SYMBOL_LENGTH + 8], "invalid_symbol", str(exc))


def review_subscribe(
    raw: Sequence[str],
    current: Collection[str],
    limit: int,
    check: Callable[[str], str | None],
) -> Review:
    review = Review()
    seen: set[str] = set()
    for symbol in _symbols(raw, limit, review):
        if symbol in seen:
            review.reject(symbol, "duplicate", "symbol appears more than once in this request")
            continue
        seen.add(symbol)
        if symbol in current:
            review.reject(symbol, "already_subscribed", "already subscribed on this connection")
            continue
        reason = check(symbol)
        if reason is not None:
            review.reject(symbol, "unknown_symbol", reason)
            continue
        if len(current) + len(review.accepted) >= limit:
            review.reject(symbol, "limit_exceeded", f"at most {limit} symbols per connection")
            continue
        review.accepted.append(symbol)
    return review


def review_unsubscribe(raw: Sequence[str], current: Collection[str], limit: int) -> Review:
    review = Review()
    for symbol in _symbols(raw, limit, review):
        if symbol in review.accepted:
            continue
        if symbol not in current:
            review.reject(symbol, "not_subscribed", "not subscribed on this connection")
            continue
        review.accepted.append(symbol)
    return review


def _dump(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(obj)


def welcome(
    server_time: int,
    replica: str,
    max_symbols: int,
    max_message_bytes: int,
    heartbeat: float,
    status: str,
) -> bytes:
    return _dump({
        "type": "welcome",
        "protocol": PROTOCOL_VERSION,
        "server_time": server_time,
        "replica": replica,
        "limits": {"max_symbols": max_symbols, "max_message_bytes": max_message_bytes},
        "heartbeat": heartbeat,
        "status": status,
    })  # fmt: skip


# A reply lists rejections up to max(this, twice the request's size) bytes; the rest are counted.
REPLY_FLOOR_BYTES = 2048


def reviewed(
    kind: Literal["subscribed", "unsubscribed"],
    review: Review,
    symbols: Iterable[str],
    request_id: str | int | None,
    request_bytes: int = 0,
) -> bytes:
    """The acknowledgement. Rejections are listed while they fit in max(`REPLY_FLOOR_BYTES`,
    2 x `request_bytes`); those left out, and the items never read, are counted in `omitted`,
    so no request can make its reply much larger than itself."""
    budget = max(REPLY_FLOOR_BYTES, 2 * request_bytes)
    listed: list[dict[str, Any]] = []
    omitted = review.unread
    for r in review.rejections.values():
        item: dict[str, Any] = {"symbol": r.symbol, "code": r.code, "reason": r.reason}
        if r.count > 1:
            item["count"] = r.count
        size = len(orjson.dumps(item)) + 1
        if size > budget:
            omitted += r.count
            continue
        budget -= size
        listed.append(item)
    reply: dict[str, Any] = {
        "type": kind,
        "id": request_id,
        "accepted": review.accepted,
        "rejected": listed,
        "symbols": sorted(symbols),
    }
    if omitted:
        reply["omitted"] = omitted
    return _dump(reply)


def error(
    code: str, message: str, *, retry: bool = False, request_id: str | int | None = None
) -> bytes:
    return _dump(
        {"type": "error", "id": request_id, "code": code, "message": message, "retry": retry}
    )


def pong(t: Any, server_time: int, request_id: str | int | None) -> bytes:
    return _dump({"type": "pong", "id": request_id, "t": t, "server_time": server_time})


def reconnect(delay_ms: int) -> bytes:
    return _dump({"type": "reconnect", "delay_ms": delay_ms, "reason": "server_draining"})


def fresh(at: int, now: int, stale_after: int, stale: dict[str, int]) -> bytes:
    return _dump(
        {"type": "fresh", "at": at, "now": now, "stale_after": stale_after, "stale": stale}
    )


def status(
    state: str,
    reason: str | None = None,
    source: str | None = None,
    *,
    since: int | None = None,
    retry_after: float | None = None,
    detail: str | None = None,
) -> bytes:
    return _dump({
        "type": "status", "state": state, "reason": reason, "source": source, "since": since,
        "retry_after": retry_after, "detail": detail,
    })  # fmt: skip


def rejected(symbol: str, reason: str, source: str | None) -> bytes:
    """A subscribed symbol the feed cannot price; the server has ended that subscription."""
    return _dump({
        "type": "rejected", "symbol": symbol, "code": "unknown_symbol", "reason": reason,
        "source": source,
    })  # fmt: skip


def quotes_frame(kind: Literal["snapshot", "batch"], encoded: Sequence[bytes]) -> bytes:
    """One frame for pre-encoded quotes: `quote` for one live update, else `batch`/`snapshot`."""
    if kind == "batch" and len(encoded) == 1:
        return b'{"type":"quote","quote":' + encoded[0] + b"}"
    return b'{"type":"' + kind.encode() + b'","quotes":[' + b",".join(encoded) + b"]}"
