"""The app in-process under Starlette's TestClient (lifespan included: memory bus, simulated feed).

Starlette 1.x warns at import that it prefers `httpx2` to the installed `httpx`; the client works
the same, so that one warning is silenced here rather than turned into an error by pytest.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from starlette.exceptions import StarletteDeprecationWarning

from app.main import create_app
from app.settings import Settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

__all__ = ["TestClient", "app_client"]


@contextmanager
def app_client(env: dict[str, str] | None = None, **options: str) -> Iterator[TestClient]:
    """A client of a fresh app built from `env`; `options` go to TestClient (e.g. base_url)."""
    settings = Settings.from_env(
        {"GC_TUNING": "off", "FETCH_INTERVAL": "0.2", "SIM_SESSIONS": "always", **(env or {})}
    )
    with TestClient(create_app(settings), **options) as client:  # type: ignore[arg-type]
        yield client
