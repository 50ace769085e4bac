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
- frozen objects are never collected, so cyclic garbage among them would stay. A closed
  connection leaves none (measured: 200 connections frozen while open, then closed, left 0 cyclic
  objects; the fast path breaks the one cycle there was, see app.ws.fastpath), so this is a safety
  net: every `THAW_CHECK_EVERY` seconds, if the frozen set has grown by half while the number of
  connections has not, it is handed back to the collector and a full collection runs (survivors
  are frozen again). That walk stalls the loop (0.6-1.0 s measured at 19,000 connections), which
  is why growth that more connections explain does not trigger it.

Refcounting still frees almost everything at once; only reference cycles wait longer.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
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


class Thaw:
    """Collects what was frozen once it has grown by `growth` while `population` (the open
    connections) has not (see the module docstring)."""

    def __init__(self, population: Callable[[], int], growth: float = THAW_GROWTH) -> None:
        self._population = population
        self._growth = growth
        self._rebase()

    def _rebase(self) -> None:
        self._frozen, self._people = gc.get_freeze_count(), self._population()

    def check(self) -> bool:
        """True if it collected. `gc.get_freeze_count` walks the frozen list: call it rarely."""
        frozen, people = gc.get_freeze_count(), self._population()
        if people > self._growth * self._people:
            self._frozen, self._people = frozen, people  # more connections: that is what grew
            return False
        if frozen <= self._growth * self._frozen:
            return False
        gc.unfreeze()
        gc.collect()  # `_freeze_survivors` freezes what is still alive
        self._rebase()
        return True

    async def run(self, every: float = THAW_CHECK_EVERY) -> None:
        while True:
            await asyncio.sleep(every)
            self.check()


def restore(previous: tuple[int, int, int]) -> None:
    if _freeze_survivors in gc.callbacks:
        gc.callbacks.remove(_freeze_survivors)
    gc.unfreeze()
    gc.set_threshold(*previous)
