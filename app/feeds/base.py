"""The Feed port: where quotes come from.

A feed answers "what are these symbols worth now?" in one call. It knows nothing of the bus, of
seq numbers or of clients; the fetcher stamps what it returns. Adapters translate every foreign
failure into the small hierarchy below, so the fetcher and each provider's circuit breaker
(`app.feeds.guard`) can tell a rate limit from an outage from a bad symbol without knowing any
provider.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from app.models import FeedStatus, Quote

# Sources whose prices are a trading day's close, never live (Alpha Vantage's GLOBAL_QUOTE on a
# free key): the pages label them "End of day" whatever the market is doing.
END_OF_DAY_SOURCES = frozenset({"alphavantage"})


class FeedError(Exception):
    """Base of every error a feed raises; the message is safe to show (no secrets)."""


class FeedUnavailable(FeedError):
    """The source cannot answer now (network, 5xx, garbage body, timeout)."""


class FeedRateLimited(FeedError):
    """The source refused for quota; try again after `retry_after` seconds.

    `scope` is `minute` for a short window (wait for the next one) or `day` for a daily quota
    (the provider is done until its reset: fail over).
    """

    def __init__(self, message: str, retry_after: float, scope: str = "minute") -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.scope = scope


class FeedRejected(FeedError):
    """The request itself is wrong (bad key, plan): retrying will not help."""


@dataclass(slots=True)
class FetchResult:
    """Quotes for the symbols the feed could price, and a reason for each it refused."""

    quotes: list[Quote] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)
    # Credits the provider says are left in its current minute, when it says so.
    credits_left: int | None = None


class Feed(Protocol):
    """A source of quotes. `fetch` must be safe to cancel and must not be called concurrently."""

    name: str

    def check_symbol(self, symbol: str) -> str | None:
        """A reason why this feed can never price `symbol`, or None if it may.

        Called for every subscription, so it must be cheap and must not do I/O; a symbol that
        passes here may still be rejected later by `fetch`.
        """
        ...

    async def fetch(self, symbols: Sequence[str]) -> FetchResult:
        """Current quotes for `symbols` (already normalised). Raises `FeedError` subclasses.

        A feed with a quota may price only some of `symbols` per call (the ones due); the others
        are simply absent from the result, neither quoted nor rejected.
        """
        ...

    def status(self) -> FeedStatus:
        """The state of the data after the last `fetch`."""
        ...

    def refresh_interval(self, symbols: int, poll_interval: float) -> float:
        """Seconds between two fetches of one symbol when `symbols` are watched (quota pacing)."""
        ...

    def describe(self) -> dict[str, Any]:
        """Breaker, quota and pacing state per provider, for `/ready` details. No secrets."""
        ...
