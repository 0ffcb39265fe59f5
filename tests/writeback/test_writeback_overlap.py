"""read_ahead and the streaming diff: items produced in a thread while the caller works."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from analytics_assets.crm_writeback.diff import DiffStream
from analytics_assets.crm_writeback.overlap import WriteBehind, read_ahead
from analytics_assets.crm_writeback.validate import Record

TYPES = {"plan": "string"}


def test_every_item_in_order_from_another_thread() -> None:
    threads: set[str] = set()

    def produce() -> Iterator[int]:
        for i in range(1000):
            threads.add(threading.current_thread().name)
            yield i

    assert list(read_ahead(produce(), chunk=7)) == list(range(1000))
    assert threads == {"read-ahead"}


def test_an_error_comes_after_the_items_produced_before_it() -> None:
    def produce() -> Iterator[int]:
        yield from range(5)
        raise ValueError("broke")

    got: list[int] = []
    with pytest.raises(ValueError, match="broke"):
        for item in read_ahead(produce(), chunk=3):
            got.append(item)
    assert got == [0, 1, 2, 3, 4]


def test_closing_early_stops_the_producer_and_closes_its_source() -> None:
    closed = threading.Event()

    def produce() -> Iterator[int]:
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    items = read_ahead(produce(), chunk=1)
    assert next(items) == 0
    items.close()  # joins the thread
    assert closed.is_set()


def test_the_diff_yields_each_change_while_pendo_is_read_and_creates_last() -> None:
    records = [Record("a1", {"plan": "pro"}, (1,)), Record("new", {"plan": "x"}, (2,)),
               Record("a2", {"plan": "pro"}, (3,)), Record("a3", {}, (4,))]  # fmt: skip
    read: list[str] = []

    def pendo() -> Iterator[tuple[str, dict[str, str]]]:
        for account, plan in (("a2", "free"), ("other", "x"), ("a1", "pro")):
            read.append(account)
            yield account, {"plan": plan}

    differ = DiffStream(records, TYPES, create=True)
    changes = differ.changes(pendo())
    first = next(changes)
    assert (first.account_id, first.action, read) == ("a2", "update", ["a2"])
    assert differ.not_compared == 2  # a1 and new: a3 has nothing to send
    rest = list(changes)
    assert [(c.account_id, c.action) for c in rest] == [("new", "create")]
    result = differ.result
    assert (result.unchanged, result.accounts_in_pendo, differ.not_compared) == (2, 3, 0)
    assert [c.account_id for c in result.changes] == ["a2", "new"]


def test_the_thread_starts_before_the_first_item_is_asked_for() -> None:
    # The push step asks the warehouse about earlier runs while Pendo computes its answer.
    asked = threading.Event()

    def produce() -> Iterator[int]:
        asked.set()
        yield 1

    with read_ahead(produce()) as items:
        assert asked.wait(5)
        assert list(items) == [1]


def test_closing_before_any_item_was_taken_stops_the_producer() -> None:
    closed = threading.Event()

    def produce() -> Iterator[int]:
        try:
            while True:
                yield 0
        finally:
            closed.set()

    with read_ahead(produce(), chunk=1):
        pass  # e.g. the warehouse query before the push raised
    assert closed.is_set()


def test_write_behind_writes_in_order_in_another_thread_one_at_a_time() -> None:
    written: list[tuple[int, str]] = []
    in_flight: list[int] = []
    most_in_flight = 0
    release = threading.Event()

    def write(item: int) -> None:
        nonlocal most_in_flight
        in_flight.append(item)
        most_in_flight = max(most_in_flight, len(in_flight))
        if item == 0:
            assert release.wait(5)  # held until the caller has gone on
        written.append((item, threading.current_thread().name))
        in_flight.remove(item)

    with WriteBehind(write) as behind:
        behind.put(0)
        assert written == []  # put returned while the write is held
        release.set()
        behind.put(1)  # waits for the write of 0 first: never two at once
        assert [item for item, _ in written] == [0]
        behind.put(2)
    assert [item for item, _ in written] == [0, 1, 2]  # all written once closed
    assert most_in_flight == 1
    assert all(name.startswith("write-behind") for _, name in written)


def test_write_behind_raises_a_failed_write_at_the_next_put_and_writes_no_more() -> None:
    written: list[int] = []

    def write(item: int) -> None:
        if item == 1:
            raise OSError("the warehouse is gone")
        written.append(item)

    behind = WriteBehind(write)
    behind.put(0)
    behind.put(1)
    with pytest.raises(OSError, match="the warehouse is gone"):
        behind.put(2)
    behind.close()
    assert written == [0]

    last = WriteBehind(write)
    last.put(1)
    with pytest.raises(OSError, match="the warehouse is gone"):
        last.close()
