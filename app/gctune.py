"""Garbage-collector tuning for a process holding many long-lived connections (`GC_TUNING`).

CPython's cyclic collector walks every tracked container of a generation; with ~10,000
connections (each a handful of tasks, dicts and sets) a full collection stalls the event loop for
tens of milliseconds, and the default gen-0 threshold of 700 allocations starts collections
constantly. With tuning on, the objects alive after start-up (modules, templates, settings) are
moved out of the collector's reach with `gc.freeze()`, and young collections are rarer. Refcounting
still frees almost everything at once; only reference cycles wait longer.
"""

from __future__ import annotations

import gc

# Allocations (minus deallocations) before a gen-0 collection; CPython's default is 700.
GEN0_THRESHOLD = 50_000
GEN1_THRESHOLD = 20
GEN2_THRESHOLD = 100


def tune() -> tuple[int, int, int]:
    """Freeze what start-up built and raise the thresholds; returns the previous thresholds."""
    previous = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD)
    return previous


def restore(previous: tuple[int, int, int]) -> None:
    gc.unfreeze()
    gc.set_threshold(*previous)
