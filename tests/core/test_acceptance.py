"""app.core.acceptance: the feed's static check first, then the provider's recent rejections."""

from __future__ import annotations

from app.core.acceptance import Acceptance
from app.models import Refusal, Rejection


def test_the_feeds_reason_comes_first_then_the_providers() -> None:
    acceptance = Acceptance(lambda s: "not listed" if s == "JUNK" else None, "twelvedata")
    assert acceptance.reason("TCS") is None and acceptance.listed("TCS")
    assert acceptance.reason("JUNK") == "not listed" and not acceptance.listed("JUNK")
    acceptance.reject(Rejection("NOPE", "symbol not found", "twelvedata", 60))
    assert acceptance.reason("NOPE") == "symbol not found"
    assert acceptance.listed("NOPE")  # the feed lists it; the provider refuses it for now
    assert acceptance.refusal("NOPE") == Refusal("symbol not found", "twelvedata")
    assert acceptance.refused("TCS") is None and acceptance.refusal("TCS") is None


def test_a_rejection_ends_when_its_retry_time_has_passed() -> None:
    acceptance = Acceptance()
    acceptance.reject(Rejection("NOPE", "symbol not found", None, 0))
    assert acceptance.reason("NOPE") is None and acceptance.refused("NOPE") is None
