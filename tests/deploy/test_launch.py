"""The serving plan (app/launch.py) and the settings an operator meets first."""

from __future__ import annotations

import logging

import pytest
from uvicorn.main import main as uvicorn_cli

from app import launch
from app.settings import Settings, SettingsError, setting_names, unknown_variables


def settings(**env: str) -> Settings:
    return Settings.from_env(env)


def test_without_redis_several_workers_become_one_process_said_once() -> None:
    plan = launch.plan(settings(WEB_CONCURRENCY="2"))
    assert plan.options["workers"] == 1
    [(level, message)] = plan.notices
    assert level == logging.WARNING and message.startswith("WEB_CONCURRENCY=2 ignored")


def test_with_redis_workers_are_replicas() -> None:
    plan = launch.plan(settings(WEB_CONCURRENCY="3", REDIS_URL="redis://127.0.0.1:6379/0"))
    assert plan.options["workers"] == 3 and plan.notices == ()


def test_missing_fast_path_internals_fall_back_to_the_plain_path_loudly() -> None:
    plan = launch.plan(settings(), fast_path_missing=["uvicorn...WebSocketsSansIOProtocol"])
    assert plan.options["ws"] == "auto"
    [(level, message)] = plan.notices
    assert level == logging.ERROR and "WebSocketsSansIOProtocol" in message
    assert launch.plan(settings()).options["ws"] == launch.WS_PROTOCOL


def test_missing_http_internals_refuse_the_start() -> None:
    with pytest.raises(launch.Refused, match="HttpToolsProtocol"):
        launch.plan(settings(), http_missing=["uvicorn...HttpToolsProtocol.on_url"])


def test_the_uvicorn_command_line_means_exactly_the_plan() -> None:
    # One source: the printed command, parsed by uvicorn's own CLI, gives the plan's options.
    options = launch.plan(settings(PORT="9123", FORWARDED_ALLOW_IPS="*")).options
    args = launch.uvicorn_command(options)
    assert args[:2] == ["uvicorn", launch.APP]
    parsed = uvicorn_cli.make_context("uvicorn", args[1:]).params
    for key, value in options.items():
        assert parsed[key] == value, key
    assert set(options) == set(launch.FLAGS)


@pytest.mark.parametrize(
    ("argv", "env_workers", "expected"),
    [
        (["/venv/bin/uvicorn", "app.main:app", "--workers", "3"], 1, 3),
        (["/venv/bin/uvicorn", "app.main:app"], 2, 2),  # uvicorn falls back to WEB_CONCURRENCY
        (["/venv/lib/python3.11/site-packages/uvicorn/__main__.py", "app.main:app"], 4, 4),
        (["/venv/bin/gunicorn", "app.main:app", "--workers", "3"], 1, 1),  # not uvicorn's CLI
        (["-m", "app"], 2, 1),
    ],
)
def test_cli_workers_reads_the_uvicorn_command_line(
    argv: list[str], env_workers: int, expected: int
) -> None:
    assert launch.cli_workers(argv, env_workers) == expected


def test_drain_timeout_must_fit_in_the_graceful_shutdown() -> None:
    with pytest.raises(SettingsError, match="DRAIN_TIMEOUT=40 is longer than the graceful"):
        settings(DRAIN_TIMEOUT="40")
    with pytest.raises(SettingsError, match="DRAIN_GRACE=10 is longer than DRAIN_TIMEOUT=5"):
        settings(DRAIN_TIMEOUT="5", DRAIN_GRACE="10")
    assert settings(DRAIN_TIMEOUT="25").drain_timeout == 25


def test_a_password_in_a_url_is_never_echoed() -> None:
    with pytest.raises(SettingsError) as caught:
        settings(REDIS_URL="http://user:hunter2@cache.example:6379/0")
    assert "hunter2" not in str(caught.value)
    assert "REDIS_URL='http://user:***@cache.example:6379/0'" in str(caught.value)
    with pytest.raises(SettingsError) as caught:
        settings(TWELVEDATA_BASE_URL="ftp://api.example/?password=hunter2")
    assert "hunter2" not in str(caught.value)


def test_typos_of_settings_are_named_and_platform_variables_are_not() -> None:
    env = {"FETCH_INTERVL": "3", "WEB_CONCURENCY": "2", "REDIS_TLS_URL": "rediss://x",
           "DYNO": "web.1", "PATH": "/usr/bin", "FETCH_INTERVAL": "2"}  # fmt: skip
    assert unknown_variables(env) == [
        "FETCH_INTERVL is not a setting (did you mean FETCH_INTERVAL?); it is ignored",
        "WEB_CONCURENCY is not a setting (did you mean WEB_CONCURRENCY?); it is ignored",
    ]
    assert "FETCH_INTERVAL" in setting_names() and "REDIS_TLS_URL" not in setting_names()


def test_log_format_and_the_bundled_sample() -> None:
    assert settings(LOG_FORMAT="JSON").log_format == "json"
    with pytest.raises(SettingsError, match="LOG_FORMAT='xml': expected text or json"):
        settings(LOG_FORMAT="xml")
    replay = settings(FEEDS="replay", REPLAY_FILE="sample")
    assert replay.replay_file.endswith("sample-replay.jsonl")
