"""Is this symbol acceptable? The one owner of the answer, asked by every endpoint and the hub.

Two sources, in order: the feed's own static check (`Feed.check_symbol`: cheap, no I/O, "this
feed can never price it"), then what the fetcher's provider said lately (a symbol it called
unknown is refused until its `retry_after` passes; the fetcher announces it in the update
message's `rejected`, so every replica refuses alike).
"""

from __future__ import annotations

from collections.abc import Callable

from app.cooldown import Cooldowns
from app.models import Refusal, Rejection

# The feed's static check: a reason it can never price the symbol, or None.
FeedCheck = Callable[[str], str | None]


def _any_symbol(symbol: str) -> str | None:
    return None


class Acceptance:
    def __init__(self, feed_check: FeedCheck = _any_symbol, source: str | None = None) -> None:
        self._feed_check = feed_check
        self.source = source  # the feed's name, for the rows of refused symbols
        self._rejected = Cooldowns()

    def reason(self, symbol: str) -> str | None:
        """Why `symbol` cannot be subscribed now (the feed's reason first), or None."""
        return self._feed_check(symbol) or self._rejected.reason(symbol)

    def listed(self, symbol: str) -> bool:
        """The feed may price `symbol` (boards and cookies are filtered by this alone)."""
        return self._feed_check(symbol) is None

    def refused(self, symbol: str) -> str | None:
        """The provider's reason while it is known not to price `symbol`, else None."""
        return self._rejected.reason(symbol)

    def refusal(self, symbol: str) -> Refusal | None:
        reason = self._rejected.reason(symbol)
        return None if reason is None else Refusal(reason, self.source)

    def reject(self, rejection: Rejection) -> None:
        """The fetcher's provider called `rejection.symbol` unknown."""
        self._rejected.add(rejection.symbol, rejection.reason, rejection.retry_after)
