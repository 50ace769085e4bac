"""`python -m app`: validate the settings, then serve with the options of app/launch.py.

The one start command of every deploy (Procfile, Dockerfile, render.yaml, fly.toml).
`python -m app --print-uvicorn-command` prints the equivalent bare uvicorn command line instead.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from typing import Any

import uvicorn

from app import compat, launch
from app.main import configure_logging, create_app
from app.settings import Settings, SettingsError, warn_unknown_variables

log = logging.getLogger("app")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    parser.add_argument(
        "--print-uvicorn-command",
        action="store_true",
        help="print the equivalent uvicorn command line for these settings, and exit",
    )
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"stocktracker: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log_level, settings.log_format, settings.replica_id)
    try:
        serving = launch.plan(
            settings,
            fast_path_missing=compat.missing(compat.FAST_PATH) if settings.ws_fast_path else (),
            http_missing=compat.missing(compat.HTTP_LIMITS),
        )
    except launch.Refused as exc:
        print(f"stocktracker: {exc}", file=sys.stderr)
        raise SystemExit(launch.STARTUP_FAILURE) from None
    if args.print_uvicorn_command:
        print(shlex.join(launch.uvicorn_command(serving.options)))
        return
    warn_unknown_variables()
    for level, message in serving.notices:
        log.log(level, message)
    options = serving.options
    # Several workers need an import string: each worker process builds its own app (a replica).
    app: Any = create_app(settings) if options["workers"] == 1 else launch.APP
    if settings.log_format == "json":
        options = {**options, "log_config": None}  # uvicorn's lines go through our JSON handler
    uvicorn.run(app, **options)


if __name__ == "__main__":
    main()
