"""`/login` and `/logout` (routed only with `ACCESS_TOKENS` set): a token for a session cookie.

`POST /login` with the form field `token` sets the signed session cookie (HttpOnly, SameSite=Lax,
Secure over https, `SESSION_MAX_AGE`) and redirects to `next` (a local path only). Failed
attempts are limited per client address (the proxy-resolved one: see FORWARDED_ALLOW_IPS); the
login form is subject to the cross-site guard like every other form. Logs name the token, never
show it.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from app.access import SESSION_COOKIE, AccessPolicy
from app.endpoints.pages import plain

log = logging.getLogger(__name__)

MAX_FORM_BYTES = 4096
MAX_NEXT = 2048


class LoginThrottle:
    """Attempts per client address: a bucket of `burst` refilled at `per_minute`. At most
    `max_addresses` are remembered, the least recently seen forgotten first (bounded memory)."""

    def __init__(
        self,
        per_minute: float = 10,
        burst: float = 10,
        max_addresses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = per_minute / 60
        self.burst = burst
        self.max_addresses = max_addresses
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, stamp

    def take(self, address: str) -> float:
        """0 if `address` may try now (the attempt is counted), else seconds until it may."""
        now = self._clock()
        tokens, stamp = self._buckets.pop(address, (self.burst, now))
        tokens = min(self.burst, tokens + (now - stamp) * self.rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self.rate
        self._buckets[address] = (tokens, now)
        while len(self._buckets) > self.max_addresses:
            self._buckets.popitem(last=False)
        return wait

    def refund(self, address: str) -> None:
        """Give back an attempt that succeeded: only failures count against an address (a whole
        office behind one NAT address signs in in the morning). Taken first and refunded after,
        so that concurrent guesses cannot all pass a check made before any of them failed."""
        entry = self._buckets.get(address)
        if entry is not None:
            self._buckets[address] = (min(self.burst, entry[0] + 1), entry[1])

    def __len__(self) -> int:
        return len(self._buckets)


class Login:
    def __init__(self, policy: AccessPolicy, throttle: LoginThrottle | None = None) -> None:
        self.policy = policy
        self.throttle = throttle or LoginThrottle()

    async def page(self, request: Request) -> Response:
        """GET /login?next=/market"""
        target = safe_next(request.query_params.get("next"))
        return plain(request, "login.html", next=target, error="")

    async def submit(self, request: Request) -> Response:
        """POST /login (form fields `token`, `next`)."""
        address = request.client.host if request.client else "unknown"
        wait = self.throttle.take(address)
        if wait:
            log.debug("login attempt from %s refused: too many", address)
            return plain(
                request, "login.html", status=429, next="/",
                error=f"Too many attempts. Try again in {int(wait) + 1} s.",
                headers={"Retry-After": str(int(wait) + 1)},
            )  # fmt: skip
        form = await read_form(request, MAX_FORM_BYTES)
        target = safe_next(form.get("next"))
        token = form.get("token", "").strip()
        name = self.policy.user_for_token(token)
        if name is None:
            log.info("login from %s refused: not an access token", address)
            error = "That is not a valid access token." if token else "Enter your access token."
            return plain(request, "login.html", status=401, next=target, error=error)
        self.throttle.refund(address)
        log.info("login: %s signed in from %s", name, address)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            self.policy.issue_session(token),
            max_age=int(self.policy.session_max_age),
            path="/",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="lax",
        )
        return response

    async def logout(self, request: Request) -> Response:
        """POST /logout: forgets this browser's session (the cookie; sessions are stateless)."""
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(
            SESSION_COOKIE,
            path="/",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="lax",
        )
        return response


def safe_next(raw: str | None) -> str:
    """`raw` if it is a path on this site, else `/`: never another host (`//evil`, `/\\evil`,
    `https://evil`), never a control character a browser would strip first."""
    if not raw or len(raw) > MAX_NEXT or not raw.startswith("/") or raw.startswith("//"):
        return "/"
    if "\\" in raw or any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        return "/"
    parts = urlsplit(raw)
    if parts.scheme or parts.netloc or parts.path in ("/login", "/logout"):
        return "/"
    return raw


async def read_form(request: Request, limit: int) -> dict[str, str]:
    """An urlencoded form's first value per field, reading at most `limit` bytes of the body."""
    body = b""
    async for chunk in request.stream():
        body += chunk[: limit - len(body)]
        if len(body) >= limit:
            break
    try:
        fields = parse_qs(body.decode(errors="replace"), max_num_fields=20)
    except ValueError:  # more fields than any of our forms has
        return {}
    return {name: values[0] for name, values in fields.items()}
