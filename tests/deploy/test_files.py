"""The deploy files say what the app needs, and every copy of a fact agrees with its source.

Parsed with real parsers (json, PyYAML, tomllib) and checked key by key; the Dockerfile by a small
checker of the rules we rely on. The container itself is built and run by test_container.py
(`make test-container`); no platform (Heroku, Render, Fly.io) is reachable from the test machine.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib

import yaml

from app.settings import GRACEFUL_SHUTDOWN, Settings, setting_names
from tests.support import ROOT
from tools import deps


def procfile_web() -> str:
    [line] = [x for x in (ROOT / "Procfile").read_text().splitlines() if x.startswith("web:")]
    return line.removeprefix("web:").strip()


def test_the_procfile_runs_python_m_app_on_all_interfaces() -> None:
    # The uvicorn options live in app/launch.py, so no deploy file can drift from them.
    assert shlex.split(procfile_web()) == ["HOST=0.0.0.0", "python", "-m", "app"]


def test_render_blueprint() -> None:
    blueprint = yaml.safe_load((ROOT / "render.yaml").read_text())
    web, kv = blueprint["services"]
    assert web["type"] == "web" and web["runtime"] == "python"
    assert web["startCommand"] == procfile_web()
    assert web["buildCommand"] == "pip install -r requirements.txt"
    assert web["healthCheckPath"] == "/health"
    env = {e["key"]: e for e in web["envVars"]}
    assert env["REDIS_URL"]["fromService"] == {
        "type": "keyvalue", "name": kv["name"], "property": "connectionString"
    }  # fmt: skip
    assert env["FORWARDED_ALLOW_IPS"]["value"] == "*"
    assert kv["type"] == "keyvalue" and kv["maxmemoryPolicy"] == "noeviction"
    assert kv["ipAllowList"] == []  # private network only
    _settings_accept({k: str(e["value"]) for k, e in env.items() if "value" in e})


def test_heroku_app_json() -> None:
    manifest = json.loads((ROOT / "app.json").read_text())
    assert manifest["buildpacks"] == [{"url": "heroku/python"}]
    assert any(a["plan"].startswith("heroku-redis:") for a in manifest["addons"])
    env = manifest["env"]
    assert env["FORWARDED_ALLOW_IPS"]["value"] == "*"
    assert env["REDIS_TLS_VERIFY"]["value"] == "none"  # Heroku Redis: self-signed certificate
    assert env["OPERATOR_TOKEN"]["generator"] == "secret"
    assert "web" in manifest["formation"]
    _settings_accept({k: v["value"] for k, v in env.items() if "value" in v})


def test_fly_toml() -> None:
    fly = tomllib.loads((ROOT / "fly.toml").read_text())
    assert fly["build"]["dockerfile"] == "Dockerfile"
    service = fly["http_service"]
    assert service["internal_port"] == int(fly["env"]["PORT"])
    assert service["auto_stop_machines"] == "off"  # a stopped machine drops every WebSocket
    [check] = service["checks"]
    assert check["path"] == "/ready" and check["method"] == "GET"
    assert fly["kill_signal"] == "SIGTERM"
    # The drain and uvicorn's graceful shutdown must fit before Fly kills the machine.
    assert fly["kill_timeout"] >= Settings().drain_timeout + 5
    assert fly["env"]["FORWARDED_ALLOW_IPS"] == "*"
    _settings_accept(fly["env"])


def _settings_accept(env: dict[str, str]) -> None:
    assert set(env) <= setting_names(), set(env) - setting_names()
    Settings.from_env(env)  # raises SettingsError on a bad value


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def dockerfile_problems(text: str) -> list[str]:
    """What breaks our rules: slim Python base, a non-root user, a HEALTHCHECK on /health,
    and exec-form CMD/ENTRYPOINT (so SIGTERM reaches the app, not a shell)."""
    steps = dockerfile_instructions(text)
    problems = []
    known = {"ARG", "FROM", "ENV", "COPY", "RUN", "WORKDIR", "EXPOSE", "USER", "HEALTHCHECK",
             "CMD", "ENTRYPOINT", "LABEL"}  # fmt: skip
    problems += [f"unknown instruction {word}" for word, _ in steps if word not in known]
    args = {}
    for word, rest in steps:
        if word == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            args[name] = value
    froms = [rest for word, rest in steps if word == "FROM"]
    base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), froms[-1]) if froms else ""
    if not re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", base):
        problems.append(f"base image {base!r} is not a slim Python 3.11+ image")
    users = [rest for word, rest in steps if word == "USER"]
    if not users or users[-1] in ("root", "0"):
        problems.append("runs as root (no USER, or USER root last)")
    checks = [rest for word, rest in steps if word == "HEALTHCHECK"]
    if len(checks) != 1 or "CMD" not in checks[0]:
        problems.append("needs exactly one HEALTHCHECK ... CMD")
    starts = [(word, rest) for word, rest in steps if word in ("CMD", "ENTRYPOINT")]
    for word, rest in starts:
        try:
            parsed = json.loads(rest)
        except json.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, list):
            problems.append(f"{word} in shell form: SIGTERM would go to /bin/sh, not the app")
    if not any(word == "CMD" for word, _ in starts):
        problems.append("no CMD")
    if users and starts and steps.index(("USER", users[-1])) > steps.index(starts[-1]):
        problems.append("USER after CMD")
    return problems


def test_the_dockerfile_follows_our_rules() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert dockerfile_problems(text) == []
    steps = dockerfile_instructions(text)
    assert ("CMD", '["python", "-m", "app"]') in steps
    [check] = [rest for word, rest in steps if word == "HEALTHCHECK"]
    assert check.endswith('CMD ["python", "-m", "app.healthcheck"]')
    env = " ".join(rest for word, rest in steps if word == "ENV")
    assert "HOST=0.0.0.0" in env and "PORT=" in env
    assert any(w == "RUN" and "pip install -r /tmp/requirements.txt" in r for w, r in steps)


def test_the_dockerfile_checker_catches_what_it_is_for() -> None:
    bad = "FROM python:3.11\nCMD python -m app\n"
    found = dockerfile_problems(bad)
    assert any("slim" in p for p in found)
    assert any("root" in p for p in found)
    assert any("HEALTHCHECK" in p for p in found)
    assert any("shell form" in p for p in found)


def test_python_version_for_the_buildpacks() -> None:
    assert (ROOT / ".python-version").read_text().strip() == "3.11"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11"


def test_requirements_txt_matches_pyproject_and_the_test_venv() -> None:
    assert deps.problems((ROOT / "requirements.txt").read_text()) == []


def test_the_lock_check_notices_drift() -> None:
    lock = (ROOT / "requirements.txt").read_text()
    uvicorn_pin = re.search(r"^uvicorn==(\S+)$", lock, re.M)
    assert uvicorn_pin is not None
    moved = lock.replace(uvicorn_pin.group(0), "uvicorn==0.30.0")
    assert any("uvicorn" in p and "outside" in p for p in deps.problems(moved))
    dropped = "\n".join(x for x in lock.splitlines() if not x.startswith("orjson=="))
    assert any("orjson" in p for p in deps.problems(dropped))
    extra = lock + "leftpad==1.0\n"
    assert any("leftpad" in p for p in deps.problems(extra))


def test_every_runtime_dependency_has_a_floor_and_a_ceiling() -> None:
    for req in deps.project_requirements():
        operators = {s.operator for s in req.specifier}
        assert ">=" in operators, req
        assert "<" in operators or req.name == "tzdata", req  # tzdata is data, dated releases
    assert "uvicorn==" in deps.lowest()


def env_example() -> dict[str, str]:
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


def readme_settings() -> set[str]:
    """The variables in the README's configuration table (`A` / `_PER_DAY` rows expanded)."""
    text = (ROOT / "README.md").read_text()
    table = text[text.index("| variable | default | meaning |") : text.index("## Security")]
    names: set[str] = set()
    for row in table.splitlines()[2:]:
        if not row.startswith("| `"):
            break
        first = row.split("|")[1]
        previous = ""
        for token in re.findall(r"`([A-Z_][A-Z0-9_]*)`", first):
            if token.startswith("_"):
                token = previous[: previous.rfind(token.split("_")[1]) - 1] + token
            names.add(token)
            previous = token
    return names


def test_env_example_readme_table_and_settings_list_the_same_variables() -> None:
    assert set(env_example()) == setting_names()
    assert readme_settings() == setting_names()
    Settings.from_env(env_example())  # every value as written is valid


def test_drain_fits_inside_the_graceful_shutdown() -> None:
    assert Settings().drain_timeout <= GRACEFUL_SHUTDOWN


def test_the_readme_does_not_repeat_a_command_line_that_could_drift() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "uvicorn app.main:app --" not in readme  # app/launch.py is the one place
    assert procfile_web() in readme  # quoted exactly as the Procfile has it


def test_every_app_package_ships_in_the_wheel() -> None:
    # The wheel lists its packages by name: a new app/ package left out installs without it
    # (and fails only at import, in production).
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "app").rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert found <= listed, sorted(found - listed)
