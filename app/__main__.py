"""`python -m app`: validate the settings, then serve with the same options as the Procfile."""

from __future__ import annotations

import sys
from typing import Any

import uvicorn

from app.main import configure_logging, create_app
from app.settings import Settings, SettingsError


def main() -> None:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"stocktracker: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log_level)
    # Several workers need an import string: each worker process builds its own app (a replica).
    app: Any = create_app(settings) if settings.web_concurrency == 1 else "app.main:app"
    uvicorn.run(
        app,
        workers=settings.web_concurrency,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # Quote frames are small and many; deflate would cost ~90 KB of zlib state per connection.
        http="app.http_limits:LimitedHttpProtocol",
        ws="app.ws.fastpath:FastProtocol" if settings.ws_fast_path else "auto",
        ws_per_message_deflate=False,
        ws_max_size=settings.max_message_bytes,
        timeout_graceful_shutdown=25,
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
    )


if __name__ == "__main__":
    main()
