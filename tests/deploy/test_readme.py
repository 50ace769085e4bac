"""The README's WebSocket snippet runs as written with the venv's Python (`make run` makes it)."""

from __future__ import annotations

import re
import subprocess
import sys

import orjson

from tests.support import ROOT, AppServer


def test_the_websocket_snippet_prints_live_messages() -> None:
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"\n\.venv/bin/python - <<'EOF'\n(.*?)\nEOF\n", readme, re.S)
    assert found is not None, "the snippet is run with .venv/bin/python"
    code = found.group(1)
    assert "ws://127.0.0.1:8000/ws" in code  # what `make run` serves
    server = AppServer()
    server.start()
    try:
        script = code.replace("127.0.0.1:8000", f"127.0.0.1:{server.port}")
        with subprocess.Popen(
            [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        ) as proc:
            assert proc.stdout is not None
            kinds = [orjson.loads(proc.stdout.readline())["type"] for _ in range(3)]
            proc.terminate()
            proc.communicate(timeout=10)
        assert kinds == ["welcome", "subscribed", "snapshot"]
    finally:
        server.stop()
