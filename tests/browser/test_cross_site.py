"""Cross-site requests in real Chromium: a page on another site cannot change the watchlist.

The app runs on 127.0.0.1; the attacker's page is served by a tiny local HTTP server reached as
`localhost`, which to the browser is another site. The page auto-submits a form to the app's
`/watchlist`, as the issue's exploit did.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import Page, Response, expect

from tests.browser.conftest import screenshot
from tests.support import AppServer

ATTACK = """<!doctype html>
<html><body>
<form method="post" action="{app}/watchlist"><input name="symbol" value="TSLA"></form>
<script>document.forms[0].submit()</script>
</body></html>"""


@pytest.fixture
def attacker(server: AppServer) -> Iterator[str]:
    page = ATTACK.format(app=server.base).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://localhost:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()
    thread.join(10)


def test_a_form_on_another_site_cannot_change_the_watchlist(
    page: Page, server: AppServer, attacker: str
) -> None:
    page.goto(server.base + "/")
    page.get_by_label("Add a symbol").fill("WIPRO")
    page.get_by_role("button", name="Add", exact=True).click()  # same site: works
    expect(page.locator("#watchlist-message")).to_have_text("Added WIPRO.")

    def the_forged_post(response: Response) -> bool:
        request = response.request
        return request.method == "POST" and request.url == server.base + "/watchlist"

    with page.expect_response(the_forged_post) as forged:
        page.goto(attacker)
    response = forged.value
    assert response.request.header_value("sec-fetch-site") == "cross-site"
    assert response.status == 403
    assert response.header_value("set-cookie") is None
    expect(page.get_by_role("heading", name="Request refused")).to_be_visible()
    screenshot(page, "cross-site-refused")

    page.goto(server.base + "/")
    expect(page.locator('tr.quote[data-symbol="WIPRO"]')).to_have_count(1)
    expect(page.locator('tr.quote[data-symbol="TSLA"]')).to_have_count(0)
    page.get_by_label("Add a symbol").fill("TSLA")
    page.get_by_role("button", name="Add", exact=True).click()  # still works from the app
    expect(page.locator('tr.quote[data-symbol="TSLA"]')).to_have_count(1)
