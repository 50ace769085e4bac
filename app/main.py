"""The composition root: `create_app(settings)` wires every part inside one lifespan.

Build order (and reverse teardown): shared-state backend (bus, snapshots, registry, fetcher lease,
chart history) -> HTTP client (only when a real provider is configured) -> feed -> renderer ->
fetcher -> hub -> history reader, then the supervised background loops. Nothing async is built at
import time; `app` below is made on first access, so `uvicorn app.main:app` reads the environment
then, and a bad setting stops the process with one clear message instead of a traceback.
"""

from __future__ import annotations

import logging
import multiprocessing
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from app import descriptors, http_limits, launch, metrics
from app.access import AccessPolicy
from app.alerts import open_alerts
from app.clients import ClientBudget, ClientLimits
from app.core.acceptance import Acceptance
from app.core.admission import Admission
from app.core.fetcher_watch import FetcherWatch
from app.core.hub import Hub
from app.csrf import CrossSiteGuard
from app.drain import Drainer
from app.endpoints import alerts as alert_pages
from app.endpoints import api, pages, watchlist
from app.endpoints.longpoll import poll
from app.endpoints.query import ApiError
from app.endpoints.websocket import LeanStarlette, WebSocketShortcut, websocket_endpoint
from app.feeds import build_feed, needs_http, request_timeout
from app.fetcher import Fetcher
from app.gate import AccessGate
from app.history import History
from app.http_limits import HttpLimits, QuietDisconnects
from app.httpstats import RequestMetrics, RequestStats
from app.identity import new_nonce
from app.logbudget import REPEATING_LOGGERS, ClientNoiseFilter, RepeatFilter, client_noise
from app.logformat import JsonFormatter, RequestIds
from app.login import Login
from app.pubsub import open_backend
from app.rendering import STATIC_DIR, Renderer
from app.security import SecurityHeaders
from app.services import Services
from app.settings import Settings, SettingsError, warn_unknown_variables
from app.stats import LoopLag
from app.supervise import Supervisor
from app.ws import gctune

log = logging.getLogger("app")

# Price alerts one client address may store: a burst, then this many a minute.
ALERTS_PER_MINUTE = 10
ALERTS_BURST = 20


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings.from_env()
    access = AccessPolicy.from_settings(settings)
    # Per-client limits; its connection cap is set at start, from the descriptor limit.
    clients = ClientBudget(
        settings.max_connections_per_client,
        settings.client_http_rate,
        trusted_proxies=settings.forwarded_allow_ips,
    )
    requests = RequestStats()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with AsyncExitStack() as stack:
            backend = await stack.enter_async_context(
                open_backend(
                    settings.bus_url,
                    registry_ttl=settings.registry_ttl,
                    lease_ttl=settings.lease_ttl,
                    history_points=settings.history_points,
                    history_ttl=settings.history_ttl,
                    redis_options=settings.redis_options(),
                    prefix=settings.redis_prefix,
                    cluster=settings.redis_cluster,
                    shards=settings.redis_shards,
                    client_name=f"stocktracker:{settings.replica_id}",
                )
            )
            alerts = await stack.enter_async_context(
                open_alerts(
                    backend,
                    settings.bus_url,
                    client_name=f"stocktracker:{settings.replica_id}:alerts",
                    session_secret=settings.session_secret.reveal(),
                    limit=settings.alerts_per_owner,
                    rearm_pct=settings.alert_rearm_percent,
                    redis_options=settings.redis_options(),
                    # Alerts stored per client address (all replicas): anonymous owners are
                    # free to make.
                    rate=(ALERTS_PER_MINUTE, ALERTS_BURST),
                    max_symbols=settings.alert_symbols_max,
                    idle_days=settings.alert_idle_days,
                )
            )
            http = None
            if needs_http(settings):
                http = await stack.enter_async_context(
                    httpx.AsyncClient(
                        timeout=request_timeout(settings),
                        headers={"User-Agent": "stocktracker-live/0.1"},
                        follow_redirects=False,
                    )
                )
            feed = build_feed(settings, http, backend.quotas)
            renderer = Renderer()
            nonce = new_nonce()  # this process, among any others given the same REPLICA_ID
            fetcher = Fetcher(
                feed,
                backend,
                interval=settings.fetch_interval,
                board=settings.board_symbols,
                replica_id=settings.replica_id,
                lease_refresh=settings.lease_ttl / 3,
                reject_retry=settings.rejected_symbol_retry,
                new_symbols_per_minute=settings.new_symbols_per_minute,
                nonce=nonce,
                alerts=alerts.evaluator,
            )
            hub = Hub(
                backend,
                settings.replica_id,
                lease_refresh=settings.registry_ttl / 3,
                poll_linger=settings.poll_timeout + 5,
                nonce=nonce,
                fetchers=FetcherWatch(settings.fetch_interval),
                announce=fetcher.announcement,
                acceptance=Acceptance(feed.check_symbol, feed.name),
                # Feeds that know their symbols (simulated, replay) refuse junk at subscribe time.
                admission=Admission(
                    settings.new_symbols_per_minute,
                    settings.symbols_per_client,
                    linger=settings.poll_timeout + 5,
                    always=settings.board_symbols,
                    enabled=not getattr(feed, "authoritative_symbols", False),
                ),
            )
            history = History(backend.history)
            supervisor = Supervisor()
            stack.push_async_callback(hub.withdraw)
            stack.push_async_callback(fetcher.release)
            stack.push_async_callback(supervisor.aclose)
            supervisor.start("hub", hub.run)
            supervisor.start("fetcher", fetcher.run)
            supervisor.start("alerts", alerts.delivery.run)
            supervisor.start("alert_evaluator", alerts.evaluator.run)
            supervisor.start("alert_sweep", alerts.run_sweeps)
            loop_lag = LoopLag(settings.loop_lag_interval)
            supervisor.start("loop_lag", loop_lag.run)
            supervisor.start("client_noise", client_noise.run)
            fd_limit = descriptors.raise_limit()
            cap = descriptors.connection_cap(settings.max_connections, fd_limit)
            limits = HttpLimits(
                max_url_bytes=settings.max_url_bytes,
                max_head_bytes=settings.max_head_bytes,
                max_body_bytes=settings.max_body_bytes,
                request_timeout=settings.request_timeout,
                max_connections=cap,
            )
            clients.max_open = settings.max_connections_per_client or max(16, cap // 10)
            supervisor.start("descriptors", descriptors.FdWatch(fd_limit).run)
            drainer = Drainer(
                hub,
                fetcher,
                timeout=settings.drain_timeout,
                spread=settings.reconnect_spread,
                grace=settings.drain_grace,
            )
            drainer.install()
            stack.callback(drainer.uninstall)
            log.info(
                "replica %s serving on %s bus%s, feed %s, fetching every %gs",
                settings.replica_id,
                backend.kind,
                f" (key and channel prefix {backend.prefix!r})" if backend.prefix else "",
                feed.name,
                settings.fetch_interval,
            )
            svc = Services(
                settings, backend, feed, hub, fetcher, renderer, supervisor, history, loop_lag,
                access, clients, alerts,
            )  # fmt: skip
            if settings.gc_tuning:
                stack.callback(gctune.restore, gctune.tune())
                supervisor.start("gc_thaw", gctune.Thaw(lambda: hub.connections).run)
            yield {
                "services": svc,
                "metrics": metrics.build_registry(svc, requests),
                http_limits.STATE_KEY: limits,  # read by each connection (app.http_limits)
                http_limits.CLIENTS_KEY: clients,
            }

    login = Login(access)
    sign_in = [
        Route("/login", login.page, methods=["GET"]),
        Route("/login", login.submit, methods=["POST"]),
        Route("/logout", login.logout, methods=["POST"]),
    ]
    routes = [
            *(sign_in if access.enabled else []),
            Route("/", watchlist.dashboard),
            Route("/watchlist", watchlist.add, methods=["POST"]),
            Route("/watchlist.csv", watchlist.download),
            Route("/watchlist/{symbol:path}/remove", watchlist.remove, methods=["POST"]),
            Route("/watchlist/{symbol:path}", watchlist.remove, methods=["DELETE"]),
            Route("/market", pages.market),
            Route("/alerts", alert_pages.page, methods=["GET"]),
            Route("/alerts", alert_pages.create, methods=["POST"]),
            Route("/alerts/{alert_id}/remove", alert_pages.remove, methods=["POST"]),
            Route("/stock", pages.lookup),
            Route("/stock/{symbol:path}", pages.stock, name="stock"),
            Route("/api/quotes", api.quotes),
            Route("/api/poll", poll),
            Route("/health", api.health),
            Route("/ready", api.ready),
            Route("/metrics", metrics.metrics),
            WebSocketRoute("/ws", websocket_endpoint),  # reached via WebSocketShortcut
            Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]  # fmt: skip
    # Request ids for JSON log lines only (an idle WebSocket should not carry one for nothing).
    request_ids = [Middleware(RequestIds)] if settings.log_format == "json" else []
    return LeanStarlette(  # Starlette, lighter per WebSocket
        routes=routes,
        exception_handlers={ApiError: api.api_error_handler, 404: pages.not_found},
        # The gate goes first so that it sees /ws too; the cross-site guard last, so that its
        # refusal pages get the security headers.
        middleware=[
            *request_ids,
            Middleware(RequestMetrics, requests, routes),
            Middleware(QuietDisconnects),
            Middleware(ClientLimits, clients),
            Middleware(AccessGate, access),
            Middleware(WebSocketShortcut),
            Middleware(SecurityHeaders),
            Middleware(CrossSiteGuard, settings.allowed_origins),
        ],
        lifespan=lifespan,
    )


def configure_logging(level: str, fmt: str = "text", replica: str = "") -> None:
    """Log lines at `level`, as text or (`json`) one JSON object per line (app.logformat); in
    JSON, uvicorn's own loggers are routed to the same handler."""
    root = logging.getLogger()
    if fmt == "json":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter(replica))
        root.handlers = [handler]
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            uvicorn_log = logging.getLogger(name)
            # The access log is on only if it had a handler (uvicorn drops it when it is off).
            uvicorn_log.propagate = name != "uvicorn.access" or bool(uvicorn_log.handlers)
            uvicorn_log.handlers = []
    elif not root.handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("app").setLevel(level.upper())
    server_log = logging.getLogger("uvicorn.error")
    if level != "debug" and not any(isinstance(f, _PerConnection) for f in server_log.filters):
        server_log.addFilter(_PerConnection())
    if not any(isinstance(f, ClientNoiseFilter) for f in server_log.filters):
        server_log.addFilter(ClientNoiseFilter(client_noise))
    if not any(isinstance(f, _HiddenCredentials) for f in server_log.filters):
        server_log.addFilter(_HiddenCredentials())
    for name in REPEATING_LOGGERS:  # an outage's warnings: once a minute each, with a count
        ours = logging.getLogger(name)
        if not any(isinstance(f, RepeatFilter) for f in ours.filters):
            ours.addFilter(RepeatFilter(client_noise))


class _PerConnection(logging.Filter):
    """uvicorn logs two INFO lines per WebSocket connection (and one per close): at 10,000
    connections that is noise, and a reconnect storm spends a tenth of its CPU formatting and
    writing them. Shown with LOG_LEVEL=debug; like the access log, off otherwise."""

    MESSAGES = frozenset({
        "connection open", "connection closed", '%s - "WebSocket %s" [accepted]',
        # Refused upgrades (origin, format, access, draining): access-log lines, with the URL.
        '%s - "WebSocket %s" 403', '%s - "WebSocket %s" %d', "connection rejected (%d %s)",
        "HTTP response sent (%d %s)",
    })  # fmt: skip

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO or record.msg not in self.MESSAGES


class _HiddenCredentials(logging.Filter):
    """At debug level the websockets library logs each handshake header (`< name: value`) to
    uvicorn's logger: an access token or session cookie would be written out. Their values are
    masked; the header names stay, so the log still shows that credentials came."""

    HEADERS = frozenset({"authorization", "cookie", "set-cookie", "proxy-authorization"})
    FORMATS = frozenset({"< %s: %s", "> %s: %s"})

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if (
            record.msg in self.FORMATS
            and isinstance(args, tuple)
            and len(args) == 2
            and str(args[0]).lower() in self.HEADERS
        ):
            record.args = (args[0], "[hidden]")
        return True


def _app_from_env() -> Starlette:
    """The app for `uvicorn app.main:app` (and each worker of `python -m app`)."""
    try:
        settings = Settings.from_env()
        launch.check_worker_process(settings)
    except SettingsError as exc:
        print(f"stocktracker: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except launch.Refused as exc:
        # uvicorn's (and gunicorn's) supervisor stops on this status instead of respawning.
        print(f"stocktracker: {exc}", file=sys.stderr)
        raise SystemExit(launch.STARTUP_FAILURE) from None
    configure_logging(settings.log_level, settings.log_format, settings.replica_id)
    if multiprocessing.parent_process() is None:  # once, not once per worker
        warn_unknown_variables()
    return create_app(settings)


def __getattr__(name: str) -> Any:
    # `uvicorn app.main:app` looks the attribute up; build the app only then.
    if name == "app":
        application = _app_from_env()
        globals()["app"] = application
        return application
    raise AttributeError(name)
