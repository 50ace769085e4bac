"""What the composition root hands to every endpoint, through the lifespan state."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import HTTPConnection

from app.access import AccessPolicy
from app.alerts import Alerts
from app.clients import ClientBudget
from app.core.hub import Hub
from app.feeds.base import Feed
from app.fetcher import Fetcher
from app.history import History
from app.pubsub.base import Backend
from app.rendering import Renderer
from app.settings import Settings
from app.stats import LoopLag
from app.supervise import Supervisor


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    backend: Backend
    feed: Feed
    hub: Hub
    fetcher: Fetcher
    renderer: Renderer
    supervisor: Supervisor
    history: History
    loop_lag: LoopLag
    access: AccessPolicy
    clients: ClientBudget
    alerts: Alerts


def services(conn: HTTPConnection) -> Services:
    found: Services = conn.state.services
    return found
