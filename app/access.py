"""Who may use the app, and who may read operator data: the access policy (off by default).

With `ACCESS_TOKENS` set, a caller is a *user* when it presents one of the tokens as
`Authorization: Bearer <token>`, or the session cookie the login page issues for one. With
`OPERATOR_TOKEN` set, a caller presenting it as a bearer token is an *operator*: only operators
read `/metrics` and the detailed `/ready` body. Without `OPERATOR_TOKEN`, users may (when
`ACCESS_TOKENS` is set), or everyone may (when neither is).

Session cookie: `v1.<fingerprint>.<expiry>.<signature>`. The fingerprint names the token the
session was made with (so removing a token from `ACCESS_TOKENS` ends its sessions), the expiry is
Unix seconds, and the signature is HMAC-SHA256 over the rest with `SESSION_SECRET`, or without it
a key derived from all the tokens, so every replica with the same settings accepts every other's
sessions. Tokens are compared as HMAC digests with `hmac.compare_digest`, never as plain strings.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from app.settings import Settings
from app.signing import sign, verified

SESSION_COOKIE = "stocktracker_session"
# On every 401: how to authenticate, and that the refusal must not be cached.
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="stocktracker"', "Cache-Control": "no-store"}
_VERSION = "v1"
# Longer header or cookie values are not ours: refused without hashing them.
_MAX_CREDENTIAL = 512
_SESSION = b"session"  # the session signature's purpose (app.signing)
_KEY_LABEL = b"stocktracker session key v1"


@dataclass(frozen=True, slots=True)
class Caller:
    """What a request presented: `user` is the name of the access token (bearer or session)."""

    user: str | None = None
    operator: bool = False


ANONYMOUS = Caller()


class AccessPolicy:
    def __init__(
        self,
        tokens: Mapping[str, str],
        *,
        operator_token: str = "",
        session_secret: str = "",
        session_max_age: float = 43200.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`tokens`: name -> token (empty: access control is off)."""
        if session_secret:
            key = session_secret.encode()
        elif tokens:
            key = _mac(_KEY_LABEL, "\0".join(sorted(tokens.values())).encode())
        else:
            key = os.urandom(32)  # nothing to sign
        self._key = key
        self._users = [(self._digest(token), name) for name, token in tokens.items()]
        self._fingerprints = {self._fingerprint(token): name for name, token in tokens.items()}
        self._operator = self._digest(operator_token) if operator_token else None
        self.session_max_age = session_max_age
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings) -> AccessPolicy:
        return cls(
            {t.name: t.token.reveal() for t in settings.access_tokens},
            operator_token=settings.operator_token.reveal(),
            session_secret=settings.session_secret.reveal(),
            session_max_age=settings.session_max_age,
        )

    @property
    def enabled(self) -> bool:
        """Whether pages, `/api/*` and `/ws` need credentials."""
        return bool(self._users)

    def identify(self, headers: Mapping[str, str], cookies: Mapping[str, str]) -> Caller:
        bearer = _bearer(headers.get("authorization", ""))
        user = None
        operator = False
        if bearer:
            user = self.user_for_token(bearer)
            operator = self._operator is not None and hmac.compare_digest(
                self._digest(bearer), self._operator
            )
        if user is None:
            user = self.session_user(cookies.get(SESSION_COOKIE, ""))
        return Caller(user, operator) if user or operator else ANONYMOUS

    def admits(self, caller: Caller) -> bool:
        """May use pages, `/api/*` and `/ws`."""
        return not self.enabled or caller.user is not None

    def operates(self, caller: Caller) -> bool:
        """May read `/metrics` and the detailed `/ready` body."""
        if self._operator is not None:
            return caller.operator
        return self.admits(caller)

    def user_for_token(self, token: str) -> str | None:
        """The name of the access token `token` is, if any (constant time in the token)."""
        if not token or len(token) > _MAX_CREDENTIAL:
            return None
        candidate = self._digest(token)
        found = None
        for digest, name in self._users:  # no early exit: the time says nothing about which
            if hmac.compare_digest(digest, candidate):
                found = name
        return found

    def issue_session(self, token: str) -> str:
        """A session cookie value for a valid access `token`."""
        expires = int(self._clock() + self.session_max_age)
        body = f"{_VERSION}.{self._fingerprint(token)}.{expires}"
        return sign(self._key, _SESSION, body)

    def session_user(self, value: str) -> str | None:
        """The name of the token a valid, unexpired session was made with."""
        body = verified(self._key, _SESSION, value, _MAX_CREDENTIAL)
        if body is None:
            return None
        version, fingerprint, expires = (body.split(".") + ["", ""])[:3]
        if version != _VERSION or not expires.isdigit():
            return None
        now = self._clock()
        # A lowered SESSION_MAX_AGE shortens the sessions issued before it, too.
        if not now < int(expires) <= now + self.session_max_age + 1:
            return None
        return self._fingerprints.get(fingerprint)

    def _digest(self, token: str) -> bytes:
        return _mac(self._key, b"token\0" + token.encode())

    def _fingerprint(self, token: str) -> str:
        return _mac(self._key, b"fingerprint\0" + token.encode())[:8].hex()


def _mac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def _bearer(header: str) -> str:
    scheme, _, credentials = header.partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else ""
