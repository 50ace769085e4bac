"""Signed cookie values: `<body>.<signature>`, the signature HMAC-SHA256 over a purpose label and
the body (base64url, unpadded). Login sessions (app.access) and browser identities
(app.alerts.identity) use it with their own labels, so a value signed for one purpose is never
valid for another."""

from __future__ import annotations

import base64
import hashlib
import hmac


def sign(key: bytes, purpose: bytes, body: str) -> str:
    """`body` with its signature appended."""
    return f"{body}.{_signature(key, purpose, body)}"


def verified(key: bytes, purpose: bytes, value: str, max_len: int) -> str | None:
    """The body of a value signed with `key` for `purpose`; None if it is empty, longer than
    `max_len` (not even checked) or its signature does not match (compared in constant time)."""
    if not value or len(value) > max_len:
        return None
    body, _, signature = value.rpartition(".")
    if not hmac.compare_digest(signature.encode(), _signature(key, purpose, body).encode()):
        return None
    return body


def _signature(key: bytes, purpose: bytes, body: str) -> str:
    raw = hmac.new(key, purpose + b"\0" + body.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
