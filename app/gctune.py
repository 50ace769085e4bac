"""Garbage-collector tuning for a process holding many long-lived connections (`GC_TUNING`).

CPython's cyclic collector walks every tracked container of a generation; with 19,000
connections (each a handful of dicts, sets and coroutine frames) a full collection stalls the
event loop for 0.6-1.0 s here, and the default gen-0 threshold of 700 allocations starts
collections constantly. With tuning on:

- the objects alive after start-up (modules, templates, settings) are moved out of the
  collector's reach with `gc.freeze()`, and young collections are rarer;
- whatever survives a full collection is frozen too, right after it (a gc callback; freezing is
  a list splice, O(1)): the connections of a reconnect storm are walked by one full collection
  instead of by every one that their growth triggers (CPython starts one each time the old
  generation grows by a quarter);
- frozen objects are never collected, so cyclic garbage of connections that closed since would
  stay: every `THAW_CHECK_EVERY` seconds, if the frozen set has grown by half since the last
  time, it is handed back to the collector and a full collection runs (the survivors are frozen
  again). That walk stalls the loop (0.6-1.0 s measured at 19,000 connections), so it happens
  when the connection count has grown or churned by that much, not on a timer; a stable
  population is never walked. The fast path breaks the one cycle every closed connection would
  leave (app.ws.fastpath), so most of a closed connection is freed by refcounting anyway.

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
THAW_CHECK_EVERY = 300.0
THAW_GROWTH = 1.5


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


async def thaw_when_grown(every: float = THAW_CHECK_EVERY, growth: float = THAW_GROWTH) -> None:
    """Collect what was frozen once it has grown by `growth` (see the module docstring)."""
    baseline = gc.get_freeze_count()  # a walk of the frozen list: once per `every`
    while True:
        await asyncio.sleep(every)
        if gc.get_freeze_count() > growth * baseline:
            gc.unfreeze()
            gc.collect()  # `_freeze_survivors` freezes what is still alive
            baseline = gc.get_freeze_count()


def restore(previous: tuple[int, int, int]) -> None:
    if _freeze_survivors in gc.callbacks:
        gc.callbacks.remove(_freeze_survivors)
    gc.unfreeze()
    gc.set_threshold(*previous)
