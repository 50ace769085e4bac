"""The lighter Event and Queue behave like asyncio's for what the connection code uses."""

from __future__ import annotations

import asyncio

import pytest

from app.ws.primitives import Flag, Inbox


async def test_flag_wakes_every_waiter_and_stays_set_until_cleared() -> None:
    flag = Flag()
    waiters = [asyncio.create_task(flag.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    flag.set()
    assert await asyncio.gather(*waiters) == [True, True, True]
    assert flag.is_set() and await flag.wait()
    flag.clear()
    assert not flag.is_set()
    assert flag._waiters is None  # nothing is kept once nobody waits


async def test_a_cancelled_flag_waiter_does_not_disturb_the_others() -> None:
    flag = Flag()
    gone, stays = asyncio.create_task(flag.wait()), asyncio.create_task(flag.wait())
    await asyncio.sleep(0)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    flag.set()
    assert await asyncio.wait_for(stays, 5)


async def test_inbox_is_fifo_and_a_getter_waits_for_the_next_item() -> None:
    inbox: Inbox[int] = Inbox()
    inbox.put_nowait(1)
    inbox.put_nowait(2)
    assert inbox.qsize() == 2 and not inbox.empty()
    assert [await inbox.get(), await inbox.get()] == [1, 2]
    assert inbox.empty()
    getter = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    assert not getter.done()
    inbox.put_nowait(3)
    assert await asyncio.wait_for(getter, 5) == 3
    assert inbox._waiters is None


async def test_an_item_woken_for_a_cancelled_getter_goes_to_the_next_one() -> None:
    inbox: Inbox[str] = Inbox()
    first, second = asyncio.create_task(inbox.get()), asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    inbox.put_nowait("x")  # wakes `first` ...
    first.cancel()  # ... which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await asyncio.wait_for(second, 5) == "x"
