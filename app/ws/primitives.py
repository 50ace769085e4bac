"""Lighter stand-ins for `asyncio.Event` and `asyncio.Queue`, for objects held per connection.

Each asyncio primitive allocates its waiter deques up front (about 0.8 KB per `Event`, 2.3 KB per
`Queue`), although a connection almost never has a waiter queued. These keep the same semantics
for the methods used here and allocate a waiter list only while somebody waits.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

T = TypeVar("T")


class Flag:
    """`asyncio.Event`'s `set`, `clear`, `is_set` and `wait`."""

    __slots__ = ("_value", "_waiters")

    def __init__(self) -> None:
        self._value = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._value

    def set(self) -> None:
        if self._value:
            return
        self._value = True
        for waiter in self._waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._value = False

    async def wait(self) -> bool:
        if self._value:
            return True
        waiter = _wait_in(self._waiters_list())
        try:
            await waiter
            return True
        finally:
            self._forget(waiter)

    def _waiters_list(self) -> list[asyncio.Future[None]]:
        if self._waiters is None:
            self._waiters = []
        return self._waiters

    def _forget(self, waiter: asyncio.Future[None]) -> None:
        waiters = self._waiters
        if waiters is not None:
            waiters.remove(waiter)
            if not waiters:
                self._waiters = None


class Inbox(Generic[T]):
    """An unbounded FIFO with `asyncio.Queue`'s `put_nowait`, `get`, `empty` and `qsize`."""

    __slots__ = ("_items", "_waiters")

    def __init__(self) -> None:
        self._items: list[T] = []
        self._waiters: list[asyncio.Future[None]] | None = None

    def put_nowait(self, item: T) -> None:
        self._items.append(item)
        for waiter in self._waiters or ():
            if not waiter.done():
                waiter.set_result(None)
                break  # one item, one getter woken (as asyncio.Queue does)

    async def get(self) -> T:
        while not self._items:
            waiter = self.waiter()
            try:
                await waiter
            except BaseException:
                self.pass_on(waiter)
                raise
            finally:
                self.forget(waiter)
        return self._items.pop(0)

    def get_nowait(self) -> T:
        """The first item; the caller checked there is one."""
        return self._items.pop(0)

    def waiter(self) -> asyncio.Future[None]:
        """A future done when an item may be there (a getter that awaits it itself, to keep no
        coroutine frame of its own while it waits, must `forget` it after, and `pass_on` it
        if the wait fails)."""
        if self._waiters is None:
            self._waiters = []
        return _wait_in(self._waiters)

    def pass_on(self, waiter: asyncio.Future[None]) -> None:
        """Pass a wake-up the failed waiter can no longer use on to the next getter."""
        if waiter.done() and not waiter.cancelled() and self._items:
            self._wake_one(waiter)

    def forget(self, waiter: asyncio.Future[None]) -> None:
        if self._waiters is not None:
            self._waiters.remove(waiter)
            if not self._waiters:
                self._waiters = None

    def _wake_one(self, skip: asyncio.Future[None]) -> None:
        for waiter in self._waiters or ():
            if waiter is not skip and not waiter.done():
                waiter.set_result(None)
                return

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)


def _wait_in(waiters: list[asyncio.Future[None]]) -> asyncio.Future[None]:
    waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    waiters.append(waiter)
    return waiter
