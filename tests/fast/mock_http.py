"""An httpx client whose transport is a function: the seam every feed adapter takes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson

Handler = Callable[[httpx.Request], httpx.Response]


class Provider:
    """Answers each request with `answer(request)` and keeps every request it saw."""

    def __init__(self, answer: Handler) -> None:
        self.answer = answer
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answer(request)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self))


def json_reply(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.Response(
        status,
        content=orjson.dumps(body),
        headers={"content-type": "application/json", **(headers or {})},
    )


def always(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Handler:
    return lambda request: json_reply(body, status, headers)
