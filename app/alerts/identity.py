"""Whose alerts: the signed-in user (ACCESS_TOKENS on) or this browser (a signed cookie).

The browser's identity is the cookie `stocktracker_alerts` = `a1.<random id>.<signature>`, the
signature HMAC-SHA256 of the rest (app.signing, as app.access signs sessions). It is issued when
the browser sets its first alert, so browsers without alerts carry nothing. The key is derived from
SESSION_SECRET when set, else from a random key the first replica stores in Redis with SET NX
(`alerts:secret`), so every replica of the deployment accepts every other's cookies; on the
memory bus, a random key per process. A forged or foreign cookie is no identity.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from app.signing import sign, verified

COOKIE = "stocktracker_alerts"
COOKIE_MAX_AGE = 400 * 24 * 3600  # the longest browsers keep a cookie
_VERSION = "a1"
_MAX_COOKIE = 128
_LABEL = b"stocktracker alert identity v1"
_IDENTITY = b"identity"  # the signature's purpose (app.signing)


def derive_key(session_secret: str, shared: bytes) -> bytes:
    """The signing key: from SESSION_SECRET when set, else from the deployment's shared key."""
    base = session_secret.encode() if session_secret else shared
    return hmac.new(base, _LABEL, hashlib.sha256).digest()


class Identities:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def issue(self) -> tuple[str, str]:
        """A new browser identity: (owner, cookie value)."""
        ident = secrets.token_urlsafe(16)
        return f"anon:{ident}", sign(self._key, _IDENTITY, f"{_VERSION}.{ident}")

    def browser(self, value: str) -> str | None:
        """The owner a valid cookie names, else None."""
        body = verified(self._key, _IDENTITY, value, _MAX_COOKIE)
        if body is None:
            return None
        version, _, ident = body.partition(".")
        return f"anon:{ident}" if version == _VERSION and ident else None
