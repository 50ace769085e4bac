"""Every setting comes from the environment, is validated once at start, and is immutable after.

`Settings.from_env()` collects *all* bad values before failing, so an operator fixes a deployment in
one go: `SettingsError` carries one line per variable, naming the variable, the value and what was
expected. The README's configuration table lists the same names and defaults.
"""

from __future__ import annotations

import difflib
import ipaddress
import logging
import os
import re
import socket
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from app import credentials, resources
from app.credentials import AccessToken, Secret
from app.symbols import parse_symbol_list

T = TypeVar("T")
N = TypeVar("N", int, float)

DEFAULT_WATCHLIST = ("RELIANCE", "TCS", "INFY", "HDFCBANK", "NIFTY 50", "AAPL", "MSFT")
DEFAULT_BOARD = DEFAULT_WATCHLIST + (
    "ICICIBANK", "SBIN", "BHARTIARTL", "ITC", "LT", "SENSEX",
    "GOOGL", "AMZN", "NVDA", "TSLA", "META", "SPX",
)  # fmt: skip
REAL_PROVIDERS = ("twelvedata", "finnhub", "alphavantage", "nse")
# Real providers that take no key (NSE India's website: cookies from a first visit instead).
KEYLESS_PROVIDERS = frozenset({"nse"})
KNOWN_FEEDS = ("simulated", "replay", *REAL_PROVIDERS)
DEFAULT_FORWARDED_ALLOW_IPS = "127.0.0.1,::1"  # uvicorn's own default
# uvicorn's graceful-shutdown timeout (app.launch passes it): the drain on SIGTERM comes first and
# DRAIN_TIMEOUT must fit inside it, so the whole stop fits a 30 s platform grace period.
GRACEFUL_SHUTDOWN = 25
LOG_FORMATS = ("text", "json")
# Environment variables that are not settings but look like them: set by platforms or add-ons.
NOT_SETTINGS = frozenset({"REDIS_TLS_URL"})


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """One market-data provider: credentials, endpoint and its quota (credits; 0 = no limit)."""

    name: str
    api_key: Secret
    base_url: str
    calls_per_minute: int
    calls_per_day: int


# name -> (default base URL, free-tier calls per minute, free-tier calls per day; 0 = none).
PROVIDER_DEFAULTS: dict[str, tuple[str, int, int]] = {
    "twelvedata": ("https://api.twelvedata.com", 8, 800),
    "finnhub": ("https://finnhub.io/api/v1", 60, 0),
    "alphavantage": ("https://www.alphavantage.co/query", 5, 25),
    # No published limit; about 3 requests/s is the unofficial advice: one a second stays polite.
    "nse": ("https://www.nseindia.com", 60, 0),
}


class SettingsError(ValueError):
    """One or more environment variables hold a value the app cannot run with."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))


@dataclass(frozen=True, slots=True)
class Settings:
    """Runtime configuration. Durations are seconds, sizes are bytes."""

    host: str = "127.0.0.1"
    port: int = 8000
    # Empty means the in-memory bus: one process, nothing to install.
    redis_url: str = ""
    # Prepended to every Redis key and channel name. None: derived from REDIS_URL's DB number
    # ("" for DB 0, "db{n}:" for DB n), since pub/sub channels are shared by every DB.
    redis_prefix: str | None = None
    # REDIS_URL names a node of a Redis Cluster (app.pubsub.cluster): sharded pub/sub over
    # `redis_shards` shards, keys placed in slots with hash tags.
    redis_cluster: bool = False
    redis_shards: int = 16
    feeds: tuple[str, ...] = ("simulated",)
    # None: a different random walk each start; an int makes the simulated feed reproducible.
    sim_seed: int | None = None
    # Simulated market size: 0 lists the ~45 real instruments; more adds synthetic SIM001...
    sim_symbols: int = 0
    # Simulated quotes per fetch at most (round-robin), like a streaming provider; 0: all.
    sim_batch: int = 0
    # `calendar`: simulated instruments trade only in their exchange's sessions (app/sessions.py)
    # and say Closed, with the next open, outside them; `always`: every hour is a session (tests
    # and benchmarks, which need moving prices whatever the time of day).
    sim_sessions: str = "calendar"
    # Garbage-collector tuning for many connections: freeze start-up objects, rarer collections.
    gc_tuning: bool = True
    # `python -m app` serves /ws with app.ws.fastpath (frames written straight to the socket).
    ws_fast_path: bool = True
    fetch_interval: float = 2.0
    default_watchlist: tuple[str, ...] = DEFAULT_WATCHLIST
    board_symbols: tuple[str, ...] = DEFAULT_BOARD
    max_symbols_per_connection: int = 50
    # Price alerts (app.alerts): how many one browser or user may have, and the re-arm band (%
    # of the alert's level the price must come back by before the alert can fire again).
    alerts_per_owner: int = 20
    alert_rearm_percent: float = 0.5
    # Anonymous browsers' alerts expire after this many days without a visit; the symbols with
    # alerts (fetched even when no page watches them) are at most ALERT_SYMBOLS_MAX.
    alert_idle_days: int = 30
    alert_symbols_max: int = 200
    max_message_bytes: int = 64 * 1024
    # Replies and control messages queued for one client that is not reading; past it: 1013.
    max_queued_bytes: int = 256 * 1024
    # HTTP requests (app.http_limits): request line, whole head and body sizes, and how long a
    # client may take to send a whole request.
    max_url_bytes: int = 8 * 1024
    max_head_bytes: int = 16 * 1024
    max_body_bytes: int = 64 * 1024
    request_timeout: float = 10.0
    # Open connections (HTTP and WebSocket); 0: derived from the descriptor limit.
    max_connections: int = 0
    # Per client address (app.clients): connections and requests in progress at once (0: a
    # tenth of the connection cap), and HTTP requests a second (burst twice that; 0: no limit).
    max_connections_per_client: int = 0
    client_http_rate: float = 30.0
    # How often the event loop's wake-up delay is sampled (seconds).
    loop_lag_interval: float = 0.25
    # Browser origins trusted besides the app's own: to open /ws and to post forms (`*`: /ws only).
    allowed_origins: tuple[str, ...] = ()
    poll_timeout: float = 25.0
    # A client whose socket accepts nothing for this long is closed with 1013.
    send_timeout: float = 10.0
    # Messages per second a client may send, with a burst of twice that.
    client_rate: float = 20.0
    # Recommended client ping interval announced in `welcome`.
    heartbeat_interval: float = 25.0
    # How long a replica's subscription list outlives the replica in Redis.
    registry_ttl: float = 6.0
    # The fetcher's lease: a dead fetcher is replaced within about this long.
    lease_ttl: float = 2.0
    # The stock chart's shared history: points kept per symbol, and how long (seconds) a symbol's
    # history outlives its last new point (a symbol nobody watches any more stops being fetched).
    history_points: int = 3000
    history_ttl: float = 21600.0
    # On SIGTERM: longest wait for clients to leave, and the spread of their reconnect delays.
    drain_timeout: float = 15.0
    reconnect_spread: float = 5.0
    # On SIGTERM: keep answering (failing readiness) at least this long, for the load balancer.
    drain_grace: float = 3.0
    replica_id: str = field(default_factory=lambda: _default_replica_id())
    log_level: str = "info"
    # `text` (human lines) or `json` (one object per line, for log pipelines).
    log_format: str = "text"
    # Never-priced symbols a real provider is asked about per minute (burst: the same number).
    new_symbols_per_minute: float = 6.0
    # ... of which one client address may have waiting for a first price at once
    # (app.core.admission); 0: half of `new_symbols_per_minute`.
    new_symbols_per_client: int = 0
    # uvicorn worker processes on this host (`python -m app`; the uvicorn CLI reads it too);
    # without REDIS_URL the app runs one process whatever it says (app.launch).
    web_concurrency: int = 1
    # TLS for rediss:// URLs, passed through to redis-py.
    redis_tls_ca_certs: str = ""
    redis_tls_certfile: str = ""
    redis_tls_keyfile: str = ""
    redis_tls_verify: str = "required"
    # Real providers, whether named in FEEDS or not (so their settings are always validated).
    providers: tuple[ProviderConfig, ...] = ()
    replay_file: str = ""
    # 1.0 plays a recording at its recorded pace; 10 plays it ten times faster.
    replay_speed: float = 1.0
    # Consecutive failures that open a provider's circuit, and how long it stays open.
    breaker_fail_max: int = 3
    breaker_reset_timeout: float = 30.0
    # A symbol a provider says it does not know is not asked for again for this long.
    rejected_symbol_retry: float = 900.0
    # Access control, off while empty: pages, /api/* and /ws then need one of these tokens (as
    # `Authorization: Bearer`) or a session from the login page.
    access_tokens: tuple[AccessToken, ...] = ()
    # Signs login sessions; empty: a key derived from ACCESS_TOKENS (every replica agrees).
    session_secret: Secret = Secret("")
    # How long a login session lasts (seconds).
    session_max_age: float = 43200.0
    # Opens /metrics and the detailed /ready body; when empty, an access credential does (if
    # ACCESS_TOKENS is set) or they are open.
    operator_token: Secret = Secret("")
    # Addresses whose X-Forwarded-For / -Proto uvicorn believes (uvicorn reads the same variable).
    forwarded_allow_ips: str = DEFAULT_FORWARDED_ALLOW_IPS

    @property
    def symbols_per_client(self) -> int:
        """Never-priced symbols one client may have waiting for a first price at once."""
        return self.new_symbols_per_client or max(1, int(self.new_symbols_per_minute // 2))

    def provider(self, name: str) -> ProviderConfig:
        for config in self.providers:
            if config.name == name:
                return config
        base, per_minute, per_day = PROVIDER_DEFAULTS[name]
        return ProviderConfig(name, Secret(""), base, per_minute, per_day)

    @property
    def bus_url(self) -> str:
        return self.redis_url or "memory://"

    def redis_options(self) -> dict[str, Any]:
        """Extra redis-py connection options (TLS settings, for rediss:// URLs only)."""
        if not self.redis_url.startswith("rediss://"):
            return {}
        options: dict[str, Any] = {"ssl_cert_reqs": self.redis_tls_verify}
        for key, value in (
            ("ssl_ca_certs", self.redis_tls_ca_certs),
            ("ssl_certfile", self.redis_tls_certfile),
            ("ssl_keyfile", self.redis_tls_keyfile),
        ):
            if value:
                options[key] = value
        return options

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        reader = _Reader(env)
        settings = cls(
            host=reader.get("HOST", "127.0.0.1", _text),
            port=reader.get("PORT", 8000, _int_in(1, 65535)),
            redis_url=reader.get("REDIS_URL", "", _redis_url),
            redis_prefix=reader.get("REDIS_PREFIX", None, _redis_prefix),
            redis_cluster=reader.get("REDIS_CLUSTER", False, _on_off),
            redis_shards=reader.get("REDIS_SHARDS", 16, _int_in(1, 1024)),
            feeds=reader.get("FEEDS", ("simulated",), _feeds),
            sim_seed=reader.get("SIM_SEED", None, _optional_int),
            sim_symbols=reader.get("SIM_SYMBOLS", 0, _int_in(0, 10_000)),
            sim_batch=reader.get("SIM_BATCH", 0, _int_in(0, 10_000)),
            sim_sessions=reader.get("SIM_SESSIONS", "calendar", _sim_sessions),
            gc_tuning=reader.get("GC_TUNING", True, _on_off),
            ws_fast_path=reader.get("WS_FAST_PATH", True, _on_off),
            fetch_interval=reader.get("FETCH_INTERVAL", 2.0, _seconds(0.05, 3600)),
            default_watchlist=reader.get("DEFAULT_WATCHLIST", DEFAULT_WATCHLIST, _symbols),
            board_symbols=reader.get("BOARD_SYMBOLS", DEFAULT_BOARD, _symbols),
            max_symbols_per_connection=reader.get(
                "MAX_SYMBOLS_PER_CONNECTION", 50, _int_in(1, 10_000)
            ),
            alerts_per_owner=reader.get("ALERTS_PER_OWNER", 20, _int_in(1, 1000)),
            alert_rearm_percent=reader.get("ALERT_REARM_PERCENT", 0.5, _rate(0.01, 20)),
            alert_idle_days=reader.get("ALERT_IDLE_DAYS", 30, _int_in(1, 3650)),
            alert_symbols_max=reader.get("ALERT_SYMBOLS_MAX", 200, _int_in(1, 10_000)),
            max_message_bytes=reader.get("MAX_MESSAGE_BYTES", 64 * 1024, _int_in(256, 16 << 20)),
            max_queued_bytes=reader.get(
                "MAX_QUEUED_BYTES", 256 * 1024, _int_in(16 * 1024, 1 << 30)
            ),
            max_url_bytes=reader.get("MAX_URL_BYTES", 8 * 1024, _int_in(256, 1 << 20)),
            max_head_bytes=reader.get("MAX_HEAD_BYTES", 16 * 1024, _int_in(1024, 1 << 20)),
            max_body_bytes=reader.get("MAX_BODY_BYTES", 64 * 1024, _int_in(1024, 1 << 30)),
            request_timeout=reader.get("REQUEST_TIMEOUT", 10.0, _seconds(0.1, 600)),
            max_connections=reader.get("MAX_CONNECTIONS", 0, _int_in(0, 10_000_000)),
            max_connections_per_client=reader.get(
                "MAX_CONNECTIONS_PER_CLIENT", 0, _int_in(0, 10_000_000)
            ),
            client_http_rate=reader.get("CLIENT_HTTP_RATE", 30.0, _rate(0, 1_000_000)),
            loop_lag_interval=reader.get("LOOP_LAG_INTERVAL", 0.25, _seconds(0.001, 60)),
            allowed_origins=reader.get("ALLOWED_ORIGINS", (), _origins),
            poll_timeout=reader.get("POLL_TIMEOUT", 25.0, _seconds(0.1, 120)),
            send_timeout=reader.get("SEND_TIMEOUT", 10.0, _seconds(0.1, 300)),
            client_rate=reader.get("CLIENT_RATE", 20.0, _rate(0.1, 100_000)),
            heartbeat_interval=reader.get("HEARTBEAT_INTERVAL", 25.0, _seconds(1, 3600)),
            registry_ttl=reader.get("REGISTRY_TTL", 6.0, _seconds(1, 3600)),
            lease_ttl=reader.get("LEASE_TTL", 2.0, _seconds(0.3, 600)),
            history_points=reader.get("HISTORY_POINTS", 3000, _int_in(10, 100_000)),
            history_ttl=reader.get("HISTORY_TTL", 21600.0, _seconds(1, 7 * 86400)),
            drain_timeout=reader.get("DRAIN_TIMEOUT", 15.0, _seconds(0, 600)),
            reconnect_spread=reader.get("RECONNECT_SPREAD", 5.0, _seconds(0, 600)),
            drain_grace=reader.get("DRAIN_GRACE", 3.0, _seconds(0, 600)),
            replica_id=reader.get("REPLICA_ID", _default_replica_id(), _text),
            log_level=reader.get("LOG_LEVEL", "info", _log_level),
            log_format=reader.get("LOG_FORMAT", "text", _log_format),
            web_concurrency=reader.get("WEB_CONCURRENCY", 1, _int_in(1, 64)),
            new_symbols_per_minute=reader.get("NEW_SYMBOLS_PER_MINUTE", 6.0, _rate(0.1, 100_000)),
            new_symbols_per_client=reader.get("NEW_SYMBOLS_PER_CLIENT", 0, _int_in(0, 10_000)),
            redis_tls_ca_certs=reader.get("REDIS_TLS_CA_CERTS", "", _text),
            redis_tls_certfile=reader.get("REDIS_TLS_CERTFILE", "", _text),
            redis_tls_keyfile=reader.get("REDIS_TLS_KEYFILE", "", _text),
            redis_tls_verify=reader.get("REDIS_TLS_VERIFY", "required", _tls_verify),
            providers=tuple(_provider(reader, name) for name in REAL_PROVIDERS),
            replay_file=reader.get("REPLAY_FILE", "", _replay_file),
            replay_speed=reader.get("REPLAY_SPEED", 1.0, _seconds(0.01, 10_000)),
            breaker_fail_max=reader.get("BREAKER_FAIL_MAX", 3, _int_in(1, 1000)),
            breaker_reset_timeout=reader.get("BREAKER_RESET_TIMEOUT", 30.0, _seconds(0.01, 3600)),
            rejected_symbol_retry=reader.get("REJECTED_SYMBOL_RETRY", 900.0, _seconds(1, 86400)),
            access_tokens=reader.get("ACCESS_TOKENS", (), credentials.access_tokens, secret=True),
            session_secret=reader.get(
                "SESSION_SECRET", Secret(""), credentials.session_secret, secret=True
            ),
            session_max_age=reader.get("SESSION_MAX_AGE", 43200.0, _seconds(60, 90 * 86400)),
            operator_token=reader.get("OPERATOR_TOKEN", Secret(""), credentials.token, secret=True),
            forwarded_allow_ips=reader.get(
                "FORWARDED_ALLOW_IPS", DEFAULT_FORWARDED_ALLOW_IPS, _trusted_proxies
            ),
        )
        _check_feeds(settings, reader.problems)
        if settings.max_url_bytes > settings.max_head_bytes:
            reader.problems.append(
                f"MAX_URL_BYTES={settings.max_url_bytes} is larger than "
                f"MAX_HEAD_BYTES={settings.max_head_bytes}: the request line is part of the head"
            )
        if settings.operator_token in (t.token for t in settings.access_tokens):
            reader.problems.append(
                "OPERATOR_TOKEN is also in ACCESS_TOKENS: give operators a token of their own"
            )
        if settings.drain_timeout > GRACEFUL_SHUTDOWN:
            reader.problems.append(
                f"DRAIN_TIMEOUT={settings.drain_timeout:g} is longer than the graceful-shutdown "
                f"timeout it must fit inside ({GRACEFUL_SHUTDOWN} s)"
            )
        if settings.drain_grace > settings.drain_timeout:
            reader.problems.append(
                f"DRAIN_GRACE={settings.drain_grace:g} is longer than "
                f"DRAIN_TIMEOUT={settings.drain_timeout:g}, the longest drain"
            )
        if settings.redis_cluster:
            _check_cluster_client(reader.problems)
        if settings.redis_cluster and not settings.redis_url.startswith(("redis://", "rediss://")):
            reader.problems.append(
                "REDIS_CLUSTER=on needs REDIS_URL=redis://host:port (or rediss://) of a node of "
                "the cluster"
            )
        if (
            settings.redis_cluster
            and settings.redis_prefix
            and re.search("[{}]", settings.redis_prefix)
        ):
            reader.problems.append(
                "REDIS_PREFIX must not contain { or } with REDIS_CLUSTER=on: the app tags its "
                "keys with hash tags of its own"
            )
        if settings.web_concurrency > 1 and settings.redis_url and "REPLICA_ID" in env:
            # Each worker is a replica of its own (without Redis there is one process).
            settings = replace(settings, replica_id=f"{settings.replica_id}-{os.getpid()}")
        if reader.problems:
            raise SettingsError(reader.problems)
        return settings


def _check_cluster_client(problems: list[str]) -> None:
    """REDIS_CLUSTER=on with a redis-py too old for it: one line at start, not a traceback."""
    from importlib.metadata import version

    from app.pubsub.cluster_names import check_redis_py

    try:
        check_redis_py(version("redis"))
    except RuntimeError as exc:
        problems.append(str(exc))


def _provider(reader: _Reader, name: str) -> ProviderConfig:
    prefix = name.upper()
    base, per_minute, per_day = PROVIDER_DEFAULTS[name]
    return ProviderConfig(
        name=name,
        api_key=Secret(
            "" if name in KEYLESS_PROVIDERS else reader.get(f"{prefix}_API_KEY", "", _text)
        ),
        base_url=reader.get(f"{prefix}_BASE_URL", base, _http_url),
        calls_per_minute=reader.get(
            f"{prefix}_CALLS_PER_MINUTE", per_minute, _int_in(1, 1_000_000)
        ),
        calls_per_day=reader.get(f"{prefix}_CALLS_PER_DAY", per_day, _int_in(0, 100_000_000)),
    )


def _check_feeds(settings: Settings, problems: list[str]) -> None:
    """Rules across variables: what FEEDS names must be configured, and what may be chained."""
    feeds = settings.feeds
    if len(feeds) != len(set(feeds)):
        problems.append(f"FEEDS={','.join(feeds)!r}: a feed is named twice")
    for name in ("simulated", "replay"):
        if name in feeds and len(feeds) > 1:
            problems.append(
                f"FEEDS={','.join(feeds)!r}: {name} cannot be chained with other feeds "
                "(its prices must never stand in for real ones)"
            )
    for name in feeds:
        keyed = name in REAL_PROVIDERS and name not in KEYLESS_PROVIDERS
        if keyed and not settings.provider(name).api_key:
            problems.append(f"FEEDS names {name} but {name.upper()}_API_KEY is not set")
    if "replay" in feeds:
        if not settings.replay_file:
            problems.append("FEEDS=replay needs REPLAY_FILE (a .jsonl or .csv recording)")
        elif not os.path.isfile(settings.replay_file):
            problems.append(f"REPLAY_FILE={settings.replay_file!r}: no such file")


def _default_replica_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


# Every variable name `Settings.from_env` reads (filled as it reads them).
_NAMES: set[str] = set()


def setting_names() -> frozenset[str]:
    """The environment variables that are settings."""
    if not _NAMES:
        Settings.from_env({})
    return frozenset(_NAMES)


def unknown_variables(env: Mapping[str, str]) -> list[str]:
    """One line per variable in `env` that is not a setting but looks like one (a typo)."""
    names = sorted(setting_names())
    lines = []
    for name in sorted(env):
        if name in _NAMES or name in NOT_SETTINGS:
            continue
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.85)
        if close:
            lines.append(f"{name} is not a setting (did you mean {close[0]}?); it is ignored")
    return lines


def warn_unknown_variables(env: Mapping[str, str] | None = None) -> None:
    """Log `unknown_variables` once, at start (the caller's job to call it once)."""
    for line in unknown_variables(os.environ if env is None else env):
        logging.getLogger("app").warning("%s", line)


_URL_PASSWORD = re.compile(r"(//[^/:@\s]*:)[^/@\s]*@")
_QUERY_PASSWORD = re.compile(r"((?:password|passwd|pwd)=)[^&\s]*", re.IGNORECASE)


def hide_url_secrets(text: str) -> str:
    """`text` with passwords inside URLs masked (`//user:***@host`, `?password=***`)."""
    return _QUERY_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***@", text))


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def get(self, name: str, default: T, parse: Callable[[str], T], *, secret: bool = False) -> T:
        """The parsed variable, or `default` when unset. A `secret` is never quoted in a problem,
        and neither is a password inside a URL."""
        _NAMES.add(name)
        raw = self.env.get(name)
        if raw is None or raw.strip() == "":
            return default
        try:
            return parse(raw.strip())
        except ValueError as exc:
            shown = hide_url_secrets(repr(raw))
            self.problems.append(f"{name}: {exc}" if secret else f"{name}={shown}: {exc}")
            return default


def _text(raw: str) -> str:
    return raw


def _in_range(convert: Callable[[str], N], low: N, high: N, expected: str) -> Callable[[str], N]:
    message = f"expected {expected} from {_show(low)} to {_show(high)}"

    def parse(raw: str) -> N:
        try:
            value = convert(raw)
        except ValueError:
            raise ValueError(message) from None
        if not low <= value <= high:  # also rejects nan
            raise ValueError(message)
        return value

    return parse


def _show(number: float) -> str:
    return f"{number:g}" if isinstance(number, float) else str(number)


def _int_in(low: int, high: int) -> Callable[[str], int]:
    return _in_range(int, low, high, "a whole number")


def _seconds(low: float, high: float) -> Callable[[str], float]:
    return _in_range(float, low, high, "a number of seconds")


def _rate(low: float, high: float) -> Callable[[str], float]:
    return _in_range(float, low, high, "a number")


def _on_off(raw: str) -> bool:
    value = raw.lower()
    if value in ("on", "true", "1", "yes"):
        return True
    if value in ("off", "false", "0", "no"):
        return False
    raise ValueError("expected on or off")


def _optional_int(raw: str) -> int | None:
    try:
        return int(raw)
    except ValueError:
        raise ValueError("expected a whole number (the random seed)") from None


def _http_url(raw: str) -> str:
    if not raw.startswith(("http://", "https://")):
        raise ValueError("expected an http:// or https:// URL")
    return raw.rstrip("/")


def _redis_url(raw: str) -> str:
    if not raw.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("expected a redis://, rediss:// or unix:// URL")
    return raw


_PREFIX = re.compile(r"[A-Za-z0-9_.:{}-]{1,64}")


def _redis_prefix(raw: str) -> str:
    if not _PREFIX.fullmatch(raw):
        raise ValueError("expected 1 to 64 letters, digits or - _ . : { } (e.g. shop1:)")
    return raw


def _feeds(raw: str) -> tuple[str, ...]:
    names = tuple(part.strip().lower() for part in raw.split(",") if part.strip())
    unknown = [n for n in names if n not in KNOWN_FEEDS]
    if not names or unknown:
        raise ValueError(f"expected a comma-separated list of {', '.join(KNOWN_FEEDS)}")
    return names


MAX_LISTED_SYMBOLS = 10_000


def _symbols(raw: str) -> tuple[str, ...]:
    parsed = parse_symbol_list(raw, max_parts=MAX_LISTED_SYMBOLS, skip_empty=True)
    if parsed.problems:
        raise ValueError(parsed.problems[0])
    if parsed.unread:
        raise ValueError(f"expected at most {MAX_LISTED_SYMBOLS} symbols")
    if not parsed.symbols:
        raise ValueError("expected a comma-separated list of symbols")
    return tuple(parsed.symbols)


def _origins(raw: str) -> tuple[str, ...]:
    origins = tuple(o.strip().rstrip("/").lower() for o in raw.split(",") if o.strip())
    for origin in origins:
        if origin != "*" and not origin.startswith(("http://", "https://")):
            raise ValueError(f"{origin!r}: expected origins like https://example.com, or *")
    return origins


def _trusted_proxies(raw: str) -> str:
    """`*`, or IP addresses and networks (uvicorn would silently take a typo for a literal)."""
    entries = [e.strip() for e in raw.split(",") if e.strip()]
    if entries == ["*"]:
        return "*"
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ValueError(
                f"{entry!r}: expected IP addresses or networks (10.0.0.0/8), or * alone"
            ) from None
    return ",".join(entries)


def _tls_verify(raw: str) -> str:
    if raw.lower() not in ("required", "optional", "none"):
        raise ValueError("expected required, optional or none")
    return raw.lower()


def _sim_sessions(raw: str) -> str:
    if raw.lower() not in ("calendar", "always"):
        raise ValueError("expected calendar or always")
    return raw.lower()


def _log_format(raw: str) -> str:
    if raw.lower() not in LOG_FORMATS:
        raise ValueError("expected text or json")
    return raw.lower()


def _replay_file(raw: str) -> str:
    """A recording's path; `sample` names the one shipped with the app."""
    return str(resources.sample_recording()) if raw == resources.SAMPLE_ALIAS else raw


def _log_level(raw: str) -> str:
    level = raw.lower()
    if level not in ("critical", "error", "warning", "info", "debug"):
        raise ValueError("expected one of critical, error, warning, info, debug")
    return level
