"""Pause Python's cyclic garbage collector while a step builds many small objects.

Reading and validating 100,000 CRM rows builds a few hundred thousand dicts, tuples and
records, none of them in a reference cycle. Each allocation counts toward the cyclic
collector's next pass, and each pass over the growing heap finds nothing: that took half
the time of the read and of the validation (bench/README.md, CRM write-back). Reference
counting still frees everything as usual; the collector runs again afterwards.
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
            gc.enable()
