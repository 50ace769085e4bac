"""Garbage-collector tuning for a process holding many long-lived connections (`GC_TUNING`).

CPython's cyclic collector walks every tracked container of a generation; with ~10,000
connections (each a handful of dicts, sets and coroutine frames) a full collection stalls the
event loop for tens of milliseconds, and the default gen-0 threshold of 700 allocations starts
collections constantly. With tuning on:

- the objects alive after start-up (modules, templates, settings) are moved out of the
  collector's reach with `gc.freeze()`, and young collections are rarer;
- whatever survives a full collection is frozen too, right after it (a gc callback; freezing is
  a list splice, O(1)): the connections of a reconnect storm are walked by one full collection
  instead of by every one that their growth triggers (CPython starts one each time the old
  generation grows by a quarter);
- every `UNFREEZE_EVERY` seconds the frozen objects are handed back to the collector and a full
  collection runs, so cyclic garbage of connections that closed since (a frozen object is never
  collected) is freed: memory stays bounded, at the cost of one full walk (one loop stall of the
  order of 100 ms at 19,000 connections) per period. The fast path breaks the one cycle every
  closed connection would leave (app.ws.fastpath), so most of them are freed by refcounting.

Refcounting still frees almost everything at once; only reference cycles wait longer.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

# Allocations (minus deallocations) before a gen-0 collection; CPython's default is 700.
GEN0_THRESHOLD = 50_000
GEN1_THRESHOLD = 20
GEN2_THRESHOLD = 100
UNFREEZE_EVERY = 600.0


def _freeze_survivors(phase: str, info: dict[str, Any]) -> None:
    if phase == "stop" and info["generation"] == 2:
        gc.freeze()


def tune() -> tuple[int, int, int]:
    """Freeze what start-up built, raise the thresholds and freeze what survives each full
    collection; returns the previous thresholds."""
    previous = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD)
    gc.callbacks.append(_freeze_survivors)
    return previous


async def thaw_periodically(every: float = UNFREEZE_EVERY) -> None:
    """Hand frozen objects back to the collector now and then, and collect (see the module
    docstring): the survivors are frozen again by the callback."""
    while True:
        await asyncio.sleep(every)
        gc.unfreeze()
        gc.collect()


def restore(previous: tuple[int, int, int]) -> None:
    if _freeze_survivors in gc.callbacks:
        gc.callbacks.remove(_freeze_survivors)
    gc.unfreeze()
    gc.set_threshold(*previous)
