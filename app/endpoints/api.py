"""The HTTP API: latest quotes, liveness and readiness. Bad input is a 400 with a JSON error."""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.core.fetcher_watch import Stall
from app.endpoints.query import ApiError, parse_symbols
from app.models import encode_quote
from app.pubsub.base import BusUnavailable
from app.services import Services, services

_STARTED = time.monotonic()


async def api_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse({"error": {"code": exc.code, "message": exc.message}}, exc.status)


async def quotes(request: Request) -> Response:
    svc = services(request)
    symbols, rejected = parse_symbols(request, svc, default=svc.settings.board_symbols)
    found = await svc.hub.snapshot(symbols)
    have = {q.symbol for q in found}
    body = (
        b'{"status":'
        + orjson.dumps(svc.hub.current_status().state)
        + b',"interval":'
        + orjson.dumps(svc.fetcher.interval)
        + b',"refresh":'
        + orjson.dumps(round(svc.hub.refresh or svc.fetcher.refresh, 2))
        + b',"feed_status":'
        + orjson.dumps(svc.hub.current_status().to_dict())
        + b',"missing":'
        + orjson.dumps([s for s in symbols if s not in have])
        + b',"rejected":'
        + orjson.dumps(rejected)
        + b',"quotes":['
        + b",".join(encode_quote(q) for q in found)
        + b"]}"
    )
    return Response(body, media_type="application/json", headers={"Cache-Control": "no-store"})


def _age(monotonic_time: float | None) -> float | None:
    return None if monotonic_time is None else round(time.monotonic() - monotonic_time, 2)


async def health(request: Request) -> Response:
    """Liveness: answering at all proves the process and its event loop run."""
    svc = services(request)
    return JSONResponse({
        "status": "ok",
        "replica": svc.settings.replica_id,
        "uptime_seconds": round(time.monotonic() - _STARTED, 1),
    })  # fmt: skip


async def ready(request: Request) -> Response:
    """Readiness: the bus answers, this process listens on it, the fetch loop is ticking, and
    somebody fetches what this replica's clients watch.

    The reasons and details only for operators (app/access.py); others get `{"ready": bool}`
    with the same status code, which is all a load balancer reads."""
    svc = services(request)
    reasons: list[str] = []
    if svc.hub.draining:
        reasons.append("draining: shutting down")
    bus_ok = await svc.backend.bus.ping()
    if not bus_ok:
        reasons.append("bus does not answer")
    if not svc.hub.bus_connected:
        reasons.append("bus listener is not connected")
    elif not svc.hub.health.hearing_itself:
        reasons.append("bus listener is deaf: this replica's heartbeat has not come back")
    for loop in ("fetcher", "hub"):
        if not svc.supervisor.healthy(loop):
            reasons.append(f"{loop} loop is not running")
    if not svc.fetcher.alive():
        detail = f" ({svc.fetcher.last_error})" if svc.fetcher.last_error else ""
        reasons.append(f"fetch loop has not completed a recent tick{detail}")
    stall = svc.hub.fetchers.stalled(len(svc.hub.subscriptions.reported_counts()))
    if stall is not None:
        reasons.append(await _no_live_fetcher(svc, stall))
    code = 200 if not reasons else 503
    if not svc.access.operates(svc.access.identify(request.headers, request.cookies)):
        return JSONResponse({"ready": not reasons}, status_code=code)
    details: dict[str, Any] = {
        "replica": svc.settings.replica_id,
        "backend": svc.backend.kind,
        "redis_prefix": svc.backend.prefix,
        "feed": svc.feed.name,
        "connections": svc.hub.connections,
        "role": svc.fetcher.role,
        "holder": svc.fetcher.holder,
        "term": svc.fetcher.term,
        "lease_error": svc.fetcher.lease_error,
        "listener": {
            "connected": svc.hub.bus_connected,
            "hearing_itself": svc.hub.health.hearing_itself,
            "rebuilds": svc.hub.health.rebuilds,
            "last_heartbeat_age": _age(svc.hub.health.last_heartbeat),
        },
        "peers": {r: _age(t) for r, t in svc.hub.health.peers.items()},
        # Other processes heard using this replica id (a misconfiguration): nonce -> seconds ago.
        "replica_id_clash": {n: round(age, 1) for n, age in svc.hub.health.twins.clashes().items()},
        "watched_symbols": len(svc.fetcher.watched),
        "fetcher": svc.hub.fetchers.describe(),
        "fetch_ticks": svc.fetcher.ticks,
        "feed_calls": svc.fetcher.feed_calls,
        "refresh_seconds": round(svc.hub.refresh or svc.fetcher.refresh, 2),
        "feed_status": svc.hub.current_status().to_dict(),
        "providers": svc.feed.describe(),
        "loops": {
            name: {"running": s.running, "restarts": s.restarts, "last_error": s.last_error}
            for name, s in svc.supervisor.states.items()
        },
    }
    return JSONResponse(
        {"ready": not reasons, "reasons": reasons, "details": details}, status_code=code
    )


async def _no_live_fetcher(svc: Services, stall: Stall) -> str:
    """The reason when this replica's watchers get nothing and nobody is heard fetching."""
    try:
        held = await svc.backend.lease.peek()
    except BusUnavailable:
        lease = "the lease cannot be read"
    else:
        lease = (
            "the lease is free"
            if held is None
            else f"the lease is held by {held.holder} (term {held.token}), which does not fetch"
        )
    return (
        f"no live fetcher: {stall.watched} watched symbol(s) got no quote for "
        f"{stall.quiet_for:.0f}s and nobody was heard fetching for {stall.silent_for:.0f}s "
        f"({lease})"
    )
