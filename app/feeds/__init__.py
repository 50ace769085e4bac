"""Build the configured feed; adapters are imported only when named in FEEDS."""

from __future__ import annotations

from app.feeds.base import Feed
from app.settings import Settings


def build_feed(settings: Settings) -> Feed:
    name = settings.feeds[0]
    if name == "simulated":
        from app.feeds.simulated import SimulatedFeed

        return SimulatedFeed(seed=settings.sim_seed, step_seconds=settings.fetch_interval)
    raise ValueError(f"unknown feed {name!r}")
