"""Work in a background thread while the caller goes on: how a write-back reads and
diffs, and logs, while it sends.

The push waits on the API's rate most of the time; reading the reference values (Pendo's
live ones) and diffing them against the CRM is CPU work that can run in those waits.
:func:`read_ahead` runs an iterator in a thread and hands its items over as they come, so
the first batch goes out as soon as it is full instead of after the whole diff.
:class:`WriteBehind` appends each answered batch to the log in a thread while the next
batch goes out: with the diff still running, an append took up to 0.3 s of the 0.2 s
between two writes (bench/README.md, "CRM write-back").
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

__all__ = ["ReadAhead", "WriteBehind", "read_ahead"]

T = TypeVar("T")

# Items handed over at a time: one queue operation per chunk, not per item. Small next
# to a batch (1,000 records), so the first batch is not held back.
_CHUNK = 128
_DONE = object()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class ReadAhead(Iterator[T]):
    """``items``, produced by a background thread from the moment this is made while the
    caller works on earlier ones (or on anything else: the thread starts at once).

    An exception of ``items`` is raised to the caller where the items stop, after every
    item produced before it. ``close()`` (or leaving a ``with`` block) stops the thread at
    its next item and closes ``items``. The queue is unbounded: every item is kept by its
    producer's result anyway (a diff keeps its changes), so holding them here costs no more.
    """

    def __init__(self, items: Iterable[T], *, chunk: int = _CHUNK) -> None:
        self._handover: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._produce, args=(items, chunk), name="read-ahead", daemon=True
        )
        self._items = self._consume()
        self._thread.start()

    def _produce(self, items: Iterable[T], chunk: int) -> None:
        source = iter(items)
        held: list[T] = []
        try:
            for item in source:
                if self._stop.is_set():
                    return
                held.append(item)
                if len(held) >= chunk:
                    self._handover.put(held)
                    held = []
            self._handover.put(held)
            self._handover.put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            self._handover.put(held)
            self._handover.put(_Failed(exc))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    def _consume(self) -> Iterator[T]:
        try:
            while True:
                got = self._handover.get()
                if got is _DONE:
                    return
                if isinstance(got, _Failed):
                    raise got.error
                yield from got  # type: ignore[misc]
        finally:
            self._stop.set()
            self._thread.join()

    def __iter__(self) -> Iterator[T]:
        return self._items  # a plain generator: `for` takes the fast path

    def __next__(self) -> T:
        return next(self._items)

    def close(self) -> None:
        self._items.close()  # a consumer already started stops the thread itself
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> ReadAhead[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_ahead(items: Iterable[T], *, chunk: int = _CHUNK) -> ReadAhead[T]:
    """``items`` read ahead in a background thread (:class:`ReadAhead`), started now."""
    return ReadAhead(items, chunk=chunk)


class WriteBehind(Generic[T]):
    """``write(item)`` for each item :meth:`put`, in order, in a background thread, while
    the caller goes on. At most one write is in flight: :meth:`put` first waits for the
    write before it, so what was handed over is written at most one item late.

    A write's exception is raised by the next :meth:`put` (which then writes nothing) or
    by :meth:`close`; leaving a ``with`` block closes, waiting for the last write.
    """

    def __init__(self, write: Callable[[T], object]) -> None:
        self._write = write
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="write-behind")
        self._pending: Future[object] | None = None

    def put(self, item: T) -> None:
        self.wait()
        self._pending = self._pool.submit(self._write, item)

    def wait(self) -> None:
        """Wait for the write in flight (raising its exception)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)

    def __enter__(self) -> WriteBehind[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
