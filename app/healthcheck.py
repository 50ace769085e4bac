"""`python -m app.healthcheck`: exit 0 if this container's app answers `GET /health`, else 1.

The Dockerfile's HEALTHCHECK (the slim image has no curl). It asks the port the app listens on
(`PORT`, default 8000) on loopback, within 4 seconds, using only the standard library.
"""

from __future__ import annotations

import os
import sys
import urllib.request


def main() -> int:
    url = f"http://127.0.0.1:{os.environ.get('PORT', '8000')}/health"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            return 0 if response.status == 200 else 1
    except OSError as exc:
        print(f"healthcheck: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
