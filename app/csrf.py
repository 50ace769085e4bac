"""The cross-site guard: a state-changing request (POST, PUT, PATCH, DELETE) that a browser sent on
behalf of another site is refused with 403, so no page elsewhere can change a visitor's watchlist
or post the login form.

The browser says where a request comes from:

- `Sec-Fetch-Site: same-origin` or `none` (typed in, a bookmark): allowed;
- any other `Sec-Fetch-Site` (`same-site`, `cross-site`): refused, unless its `Origin` is listed
  in `ALLOWED_ORIGINS` (a site the operator trusts; `*` there opens `/ws` only, never this);
- no `Sec-Fetch-Site` (an older browser): `Origin` must be this app's own (the scheme as uvicorn
  resolved it from trusted proxy headers, and the `Host` header) or a listed one; `Origin: null`
  (sandboxed frames, some redirects) is refused;
- neither header: allowed. That is not a browser acting for another site but a program (curl, a
  script), which could send any header it liked anyway.

Refusals are `403`: for `/api/*` `{"error": {"code": "cross_site", ...}}`, else an HTML page.
"""

from __future__ import annotations

from collections.abc import Awaitable

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.endpoints.pages import plain

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_SAME = frozenset({"same-origin", "none"})
CROSS_SITE_MESSAGE = "another site cannot send this request on your behalf"


def cross_site(headers: Headers, scheme: str, trusted: frozenset[str]) -> bool:
    """Whether a browser sent this request for a page of another origin (not in `trusted`)."""
    fetch_site = headers.get("sec-fetch-site")
    origin = headers.get("origin")
    if fetch_site in _SAME:
        return False
    if origin is not None and origin.lower().rstrip("/") in trusted:
        return False
    if fetch_site is not None:
        return True
    if origin is None:
        return False
    host = headers.get("host", "").lower()
    return not host or origin.lower().rstrip("/") != f"{scheme}://{host}"


class CrossSiteGuard:
    """Pure ASGI middleware; passes everything else on without a frame of its own."""

    def __init__(self, app: ASGIApp, allowed_origins: tuple[str, ...] = ()) -> None:
        self.app = app
        self.trusted = frozenset(o for o in allowed_origins if o != "*")

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if (
            scope["type"] == "http"
            and scope["method"] in STATE_CHANGING
            and cross_site(Headers(scope=scope), scope["scheme"], self.trusted)
        ):
            return self._refuse(scope, receive, send)
        return self.app(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response: Response
        if scope["path"].startswith("/api/"):
            error = {"code": "cross_site", "message": CROSS_SITE_MESSAGE}
            response = JSONResponse({"error": error}, 403)
        else:
            response = plain(
                request, "refused.html", status=403, heading="Request refused",
                message="This form was sent from another site, so it was not acted on: "
                f"{CROSS_SITE_MESSAGE}. Nothing was changed.",
            )  # fmt: skip
        await response(scope, receive, send)
