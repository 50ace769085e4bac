"""Credential settings: `ACCESS_TOKENS`, `OPERATOR_TOKEN`, `SESSION_SECRET` (a leaf, like settings).

A bad value is described by its position and length, never quoted: these parsers' messages end up
on stderr and in deployment logs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Long enough that guessing is hopeless at the login page's rate limit.
MIN_TOKEN_LENGTH = 16
MIN_SECRET_LENGTH = 32
# What `openssl rand -hex 32` and `secrets.token_urlsafe()` produce, and base64: no ':' (the
# name separator), ',' (the list separator) or whitespace.
_TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]+")
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,32}")


class Secret:
    """A value that must never be printed: its repr and str are masked, `reveal()` gives it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class AccessToken:
    """One entry of `ACCESS_TOKENS`. Logs name who signed in by `name`, never by the token."""

    name: str
    token: Secret


def access_tokens(raw: str) -> tuple[AccessToken, ...]:
    """`token` or `name:token` entries, comma-separated; unnamed ones are `token-1`, `token-2`...
    (by position). Each token: at least 16 of `A-Z a-z 0-9 . _ ~ + / = -`; no two alike."""
    found: list[AccessToken] = []
    problems: list[str] = []
    for position, entry in enumerate((e.strip() for e in raw.split(",")), 1):
        if not entry:
            continue
        name, colon, token = entry.partition(":")
        if not colon:
            name, token = f"token-{position}", entry
        elif not _NAME.fullmatch(name):
            problems.append(f"entry {position}: a name is 1-32 letters, digits, '_', '.' or '-'")
            continue
        problem = token_problem(token)
        if problem:
            problems.append(f"entry {position}: {problem}")
        elif any(t.token.reveal() == token for t in found):
            problems.append(f"entry {position}: the same token as an earlier entry")
        elif any(t.name == name for t in found):
            problems.append(f"entry {position}: the name {name!r} is used twice")
        else:
            found.append(AccessToken(name, Secret(token)))
    if problems:
        raise ValueError("; ".join(problems))
    if not found:
        raise ValueError("expected comma-separated tokens (or name:token entries)")
    return tuple(found)


def token(raw: str) -> Secret:
    """A single token (`OPERATOR_TOKEN`): the same rules as each access token."""
    problem = token_problem(raw)
    if problem:
        raise ValueError(problem)
    return Secret(raw)


def session_secret(raw: str) -> Secret:
    if len(raw) < MIN_SECRET_LENGTH:
        raise ValueError(
            f"{len(raw)} characters; at least {MIN_SECRET_LENGTH} are needed "
            "(e.g. `openssl rand -hex 32`)"
        )
    return Secret(raw)


def token_problem(token: str) -> str | None:
    if len(token) < MIN_TOKEN_LENGTH:
        return (
            f"the token has {len(token)} characters; at least {MIN_TOKEN_LENGTH} are needed "
            "(e.g. `openssl rand -hex 32`)"
        )
    if not _TOKEN.fullmatch(token):
        return "a token may hold only letters, digits and . _ ~ + / = -"
    return None
