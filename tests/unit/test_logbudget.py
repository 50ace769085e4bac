from __future__ import annotations

import logging

import pytest

from app.logbudget import ClientNoise, ClientNoiseFilter, RepeatFilter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_one_line_per_kind_per_window_then_the_count(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    noise = ClientNoise(logging.getLogger("test.noise"), window=60, clock=clock)
    with caplog.at_level(logging.WARNING, logger="test.noise"):
        for _ in range(5000):
            noise.note("invalid_utf8", "invalid UTF-8")
        noise.note("bad_request", "bad request")
        clock.now += 61
        noise.note("invalid_utf8", "invalid UTF-8")
        for _ in range(3):
            noise.note("invalid_utf8", "invalid UTF-8")
        clock.now += 61
        noise.flush()
        noise.flush()  # nothing left to say
    assert [r.getMessage() for r in caplog.records] == [
        "invalid UTF-8",
        "bad request",
        "invalid UTF-8 (and 4,999 more like it in the last 60 s)",
        "invalid UTF-8 (and 3 more like it in the last 60 s)",
    ]
    assert all(r.exc_info is None for r in caplog.records)


def test_long_messages_are_cut(caplog: pytest.LogCaptureFixture) -> None:
    noise = ClientNoise(logging.getLogger("test.noise"))
    with caplog.at_level(logging.WARNING, logger="test.noise"):
        noise.note("origin", "refused origin " + "x" * 10_000)
    assert len(caplog.records[0].getMessage()) == 200


def test_uvicorn_client_lines_go_through_the_budget(caplog: pytest.LogCaptureFixture) -> None:
    server = logging.getLogger("test.uvicorn")
    noise = ClientNoise(logging.getLogger("test.noise"))
    server.addFilter(ClientNoiseFilter(noise))
    try:
        with caplog.at_level(logging.INFO):
            for _ in range(100):
                try:
                    b"\xff".decode()
                except UnicodeDecodeError:
                    server.exception("Invalid UTF-8 sequence received from client.")
            server.info("Application startup complete.")
    finally:
        server.filters.clear()
    assert [(r.name, r.getMessage(), r.exc_info) for r in caplog.records] == [
        ("test.noise", "client: Invalid UTF-8 sequence received from client.", None),
        ("test.uvicorn", "Application startup complete.", None),
    ]


def test_an_outage_warning_is_written_once_a_window_by_its_own_logger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    noise = ClientNoise(logging.getLogger("test.noise"), window=60, clock=clock)
    fetcher = logging.getLogger("test.outage.fetcher")
    budget = RepeatFilter(noise)
    fetcher.addFilter(budget)
    try:
        with caplog.at_level(logging.INFO, logger="test.outage.fetcher"):
            for n in range(300):  # one a second, as the fetch loop did with Redis down
                fetcher.warning("fetch tick failed: %s", f"error {n}")
                clock.now += 0.2
            fetcher.info("bus listener connected")  # not a warning: never budgeted
            fetcher.error("a loop crashed")  # nor an error
            clock.now += 61
            noise.flush()
    finally:
        fetcher.removeFilter(budget)
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        ("test.outage.fetcher", "fetch tick failed: error 0"),
        ("test.outage.fetcher", "bus listener connected"),
        ("test.outage.fetcher", "a loop crashed"),
        (
            "test.outage.fetcher",
            "fetch tick failed: error 299 (and 299 more like it in the last 60 s)",
        ),
    ]
