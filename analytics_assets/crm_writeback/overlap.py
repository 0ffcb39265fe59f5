"""Produce in a background thread while the caller consumes: how a write-back reads and
diffs while it sends.

The push waits on the API's rate most of the time; reading the reference values (Pendo's
live ones) and diffing them against the CRM is CPU work that can run in those waits.
:func:`read_ahead` runs an iterator in a thread and hands its items over as they come, so
the first batch goes out as soon as it is full instead of after the whole diff.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["read_ahead"]

T = TypeVar("T")

# Items handed over at a time: one queue operation per chunk, not per item. Small next
# to a batch (1,000 records), so the first batch is not held back.
_CHUNK = 128
_DONE = object()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def read_ahead(items: Iterable[T], *, chunk: int = _CHUNK) -> Iterator[T]:
    """``items``, produced by a background thread while the caller works on earlier ones.

    An exception of ``items`` is raised to the caller where the items stop, after every
    item produced before it. Closing the iterator early stops the thread at its next item
    (and closes ``items``). The queue is unbounded: every item is kept by its producer's
    result anyway (a diff keeps its changes), so holding them here costs no more.
    """
    handover: queue.SimpleQueue[object] = queue.SimpleQueue()
    stop = threading.Event()

    def produce() -> None:
        source = iter(items)
        held: list[T] = []
        try:
            for item in source:
                if stop.is_set():
                    return
                held.append(item)
                if len(held) >= chunk:
                    handover.put(held)
                    held = []
            handover.put(held)
            handover.put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            handover.put(held)
            handover.put(_Failed(exc))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            got = handover.get()
            if got is _DONE:
                return
            if isinstance(got, _Failed):
                raise got.error
            yield from got  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()
