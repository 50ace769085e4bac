from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from tests.support import AppServer


@pytest.fixture(scope="module")
def app_server() -> Iterator[AppServer]:
    """The app as `make run` starts it (memory bus, simulated feed), with short timings."""
    yield from serve({})


def serve(env: dict[str, str]) -> Iterator[AppServer]:
    server = AppServer(
        {"MAX_SYMBOLS_PER_CONNECTION": "5", "POLL_TIMEOUT": "1", "MAX_MESSAGE_BYTES": "4096", **env}
    )
    server.start()
    yield server
    # uvicorn re-raises the SIGTERM it handled after a graceful shutdown.
    assert server.stop() in (0, -signal.SIGTERM), server.log()
    assert "Application shutdown complete" in server.log()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.path):
            item.add_marker(pytest.mark.e2e)
