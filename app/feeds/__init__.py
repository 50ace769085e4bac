"""Build the configured feed; adapters are imported only when named in FEEDS.

`simulated` and `replay` stand alone (settings refuse them in a chain). Real providers are each
wrapped in their quota and circuit breaker and put in one `FeedChain`, in `FEEDS` order, even when
there is only one, so status, failover and `/ready` details work the same way. Their quotas count
in the backend's `QuotaLedger`, shared by every replica.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from app.feeds.base import Feed
from app.settings import REAL_PROVIDERS, Settings

if TYPE_CHECKING:
    from app.feeds.guard import Adapter
    from app.feeds.ledger import QuotaLedger

# Share of the poll interval that a whole chain may spend waiting on providers; the fetch loop
# cuts a fetch off at 0.8 of the interval, so each provider gets its slice of 0.75 of it.
_CHAIN_SHARE = 0.75
MAX_REQUEST_TIMEOUT = 5.0


def needs_http(settings: Settings) -> bool:
    return any(name in REAL_PROVIDERS for name in settings.feeds)


def request_timeout(settings: Settings) -> float:
    """Per-request timeout: every provider of the chain fits inside one poll."""
    real = sum(1 for name in settings.feeds if name in REAL_PROVIDERS) or 1
    return min(MAX_REQUEST_TIMEOUT, settings.fetch_interval * _CHAIN_SHARE / real)


def build_feed(
    settings: Settings,
    http: httpx.AsyncClient | None = None,
    quotas: QuotaLedger | None = None,
) -> Feed:
    """The feed of `settings.feeds`; real providers need `http`, and count their credits in
    `quotas` (without it, each counts in this process only)."""
    name = settings.feeds[0]
    if name == "simulated":
        from app.feeds.simulated import SimulatedFeed

        return SimulatedFeed(
            seed=settings.sim_seed,
            step_seconds=settings.fetch_interval,
            symbols=settings.sim_symbols or None,
            batch=settings.sim_batch or None,
            sessions=settings.sim_sessions == "calendar",
        )
    if name == "replay":
        from app.feeds.replay import ReplayFeed, load

        return ReplayFeed(load(settings.replay_file), speed=settings.replay_speed)
    if http is None:
        raise ValueError("real providers need an HTTP client")
    from app.feeds.chain import FeedChain
    from app.feeds.guard import GuardedProvider, make_breaker
    from app.feeds.http import install_redaction
    from app.feeds.quota import Quota

    install_redaction(c.api_key.reveal() for c in settings.providers)
    timeout = request_timeout(settings)
    guarded = []
    for provider in settings.feeds:
        config = settings.provider(provider)
        adapter = _adapter(provider, http, config.api_key.reveal(), config.base_url, timeout)
        guarded.append(
            GuardedProvider(
                adapter,
                Quota(
                    config.calls_per_minute,
                    config.calls_per_day,
                    ledger=quotas,
                    provider=provider,
                    # A view is current while the fetcher polls (same bound as Fetcher.alive).
                    fresh_for=max(3 * settings.fetch_interval, 10.0),
                ),
                make_breaker(provider, settings.breaker_fail_max, settings.breaker_reset_timeout),
                poll_interval=settings.fetch_interval,
                # Alpha Vantage calls one symbol at a time and punishes bursts ("more sparingly").
                per_poll=1 if provider == "alphavantage" else None,
                call_timeout=timeout,
            )
        )
    return FeedChain(guarded)


def _adapter(
    name: str, http: httpx.AsyncClient, key: str, base_url: str, timeout: float
) -> Adapter:
    if name == "twelvedata":
        from app.feeds.twelvedata import TwelveDataFeed

        return TwelveDataFeed(http, key, base_url, timeout)
    if name == "finnhub":
        from app.feeds.finnhub import FinnhubFeed

        return FinnhubFeed(http, key, base_url, timeout)
    if name == "alphavantage":
        from app.feeds.alphavantage import AlphaVantageFeed

        return AlphaVantageFeed(http, key, base_url, timeout)
    if name == "nse":
        from app.feeds.nse import NseFeed

        return NseFeed(http, base_url, timeout)
    raise ValueError(f"unknown feed {name!r}")
