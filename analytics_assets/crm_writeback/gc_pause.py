"""Pause Python's cyclic garbage collector while a step builds many small objects.

Reading and validating 100,000 CRM rows builds a few hundred thousand dicts, tuples and
records, none of them in a reference cycle. Each allocation counts toward the cyclic
collector's next pass, and each pass over the growing heap finds nothing: that took half
the time of the read and of the validation (bench/README.md, CRM write-back). Reference
counting still frees everything as usual; the collector runs again afterwards, and the
objects built in the block count as old ones, so its next pass does not trace them all.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["gc_paused"]


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic collection inside the block (unless it was already off); nests safely."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            # Every object made in the block is still young: the first allocation after
            # enable() would trace them all (0.1-0.2 s for 300,000). freeze() + unfreeze()
            # moves them to the oldest generation and resets the young count, without a
            # pass; a later full collection looks at them as at any long-lived object.
            gc.freeze()
            gc.unfreeze()
            gc.enable()
