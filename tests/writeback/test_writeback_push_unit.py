"""The batched push against a fake client: batches, outcomes, stopping, dry runs, the log."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from analytics_assets.crm_writeback.diff import Change
from analytics_assets.crm_writeback.push import check_batch_size, push_changes, read_outcome
from analytics_assets.crm_writeback.tables import (
    LOG_TABLE,
    LogRow,
    append_log,
    previous_incomplete_run,
)
from analytics_assets.http.errors import ServerError
from analytics_assets.pendo.client import BatchOutcome, MetadataRecord
from analytics_assets.warehouse.duckdb import DuckDBWarehouse

TYPES = {"plan": "string", "renewal": "time"}


class FakePendo:
    """Answers like Pendo: ``missing`` ids unknown, ``bad`` ids refused, ``fail_on`` batches
    raise as a request that failed after its retries."""

    def __init__(
        self,
        missing: set[str] = frozenset(),
        bad: set[str] = frozenset(),
        fail_on: set[int] = frozenset(),
    ) -> None:
        self.missing, self.bad, self.fail_on = set(missing), set(bad), set(fail_on)
        self.calls: list[list[MetadataRecord]] = []

    def update_metadata(
        self,
        kind: str,
        records: Any,
        *,
        group: str = "custom",
        create: bool = False,
        batch_size: int = 1000,
    ) -> Iterator[BatchOutcome]:
        assert kind == "account" and group == "custom"
        batch = list(records)
        assert len(batch) <= batch_size
        self.calls.append(batch)
        if len(self.calls) in self.fail_on:
            raise ServerError("injected", status=500, service="pendo")
        ids = [r.id for r in batch]
        missing = tuple(i for i in ids if i in self.missing and not create)
        failed = {i: "missing" for i in missing} | {i: "plan: bad" for i in ids if i in self.bad}
        yield BatchOutcome(
            index=0,
            records=tuple(batch),
            updated_ids=tuple(i for i in ids if i not in failed),
            failed=failed,
            missing=missing,
            total=len(ids),
            raw={"updated": len(ids) - len(failed)},
        )


def _changes(n: int) -> list[Change]:
    return [
        Change(
            f"a{i:03d}",
            {"plan": "pro", "renewal": date(2026, 3, 1)},
            {"plan": "free"},
            "update",
            ("plan", "renewal"),
        )
        for i in range(n)
    ]


def _push(api: Any, changes: list[Change], **kw: Any) -> tuple[Any, list[LogRow]]:
    log: list[LogRow] = []
    summary = push_changes(api, changes, kw.pop("missing", []), TYPES, record_log=log.extend, **kw)
    return summary, log


def test_batches_of_at_most_batch_size() -> None:
    api = FakePendo()
    summary, log = _push(api, _changes(25), batch_size=10)
    assert [len(c) for c in api.calls] == [10, 10, 5]
    assert summary.updated == 25 and summary.planned_batches == 3 and summary.ok
    assert {r.batch for r in log} == {1, 2, 3}
    first = log[0]
    assert json.loads(first.values_json) == {"plan": "pro", "renewal": 1772323200000}
    assert json.loads(first.previous_json) == {"plan": "free"}
    assert first.outcome == "updated" and first.reason.startswith("plan: 'free' → 'pro'")


def test_per_record_outcomes() -> None:
    api = FakePendo(missing={"a001"}, bad={"a002"})
    summary, log = _push(api, _changes(4), batch_size=1000)
    outcomes = {r.account_id: (r.outcome, r.reason) for r in log}
    assert outcomes["a001"][0] == "missing"
    assert outcomes["a002"] == ("failed", "plan: bad")
    assert outcomes["a000"][0] == outcomes["a003"][0] == "updated"
    assert (summary.updated, summary.failed, summary.missing) == (2, 1, 1)
    assert summary.failures == [("a002", "plan: bad")]


def test_stops_at_the_failed_batch_and_logs_the_rest() -> None:
    api = FakePendo(fail_on={2})
    summary, log = _push(api, _changes(25), batch_size=10)
    assert len(api.calls) == 2
    assert not summary.ok and summary.error.startswith("batch 2 of 3 failed")
    counts = {o: sum(1 for r in log if r.outcome == o) for o in {r.outcome for r in log}}
    assert counts == {"updated": 10, "unconfirmed": 10, "not_sent": 5}
    assert (summary.updated, summary.unconfirmed, summary.not_sent) == (10, 10, 5)


def test_dry_run_sends_nothing_and_logs_the_plan() -> None:
    missing = [Change("gone", {"plan": "pro"}, {}, "missing", ("plan",))]
    summary, log = _push(None, _changes(3), batch_size=2, dry_run=True, missing=missing)
    assert summary.dry_run == 3 and summary.planned_batches == 2
    # The missing accounts come last: a streaming diff knows them once Pendo's read ends.
    assert [(r.batch, r.outcome) for r in log] == [
        (1, "dry_run"),
        (1, "dry_run"),
        (2, "dry_run"),
        (None, "missing"),
    ]
    assert log[0].reason == "plan: 'free' → 'pro'; renewal: (none) → 2026-03-01"


@pytest.mark.parametrize("size", [0, 1001, True, 2.5])
def test_batch_size_limits(size: Any) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        check_batch_size(size)
    assert check_batch_size(1000) == 1000


def test_unexplained_shortfall_is_not_counted_as_written() -> None:
    outcome = BatchOutcome(0, (), ("a", "b", "c"), {}, (), 3, {"updated": 2})
    updated, failed, missing = read_outcome(outcome, ["a", "b", "c"])
    assert updated == set() and set(failed) == {"a", "b", "c"} and missing == set()
    assert "confirmed 2 of 3" in failed["a"]


def test_log_table_and_previous_run(tmp_path: Path) -> None:
    warehouse = DuckDBWarehouse(database=str(tmp_path / "w.duckdb"))
    assert previous_incomplete_run(warehouse, "r2") is None
    _, log = _push(FakePendo(fail_on={2}), _changes(25), batch_size=10)
    append_log(warehouse, "r1", log, dry_run=False)
    append_log(warehouse, "dry", [LogRow(1, "a000", "{}", "{}", "dry_run")], dry_run=True)
    cols = dict(warehouse.columns(LOG_TABLE))
    assert cols["batch"] == "INTEGER" and cols["written_at"] == "TIMESTAMP WITH TIME ZONE"
    previous = previous_incomplete_run(warehouse, "r2")
    assert previous is not None and previous.run_id == "r1"  # dry runs do not count
    assert (len(previous.updated), len(previous.unconfirmed), len(previous.not_sent)) == (
        10,
        10,
        5,
    )
    complete = [LogRow(1, "a000", "{}", "{}", "updated")]
    append_log(warehouse, "r2", complete, dry_run=False)
    assert previous_incomplete_run(warehouse, "r3") is None  # the latest run finished


# ----- a streaming diff: batches go while the diff is read; the read may break ----------


def _stream(changes: list[Change], sent: list[int], api: FakePendo, fail_after: int = -1):
    """Yields ``changes``, noting how many batches were sent by the time each one came;
    raises as a broken read of Pendo's values after ``fail_after`` changes."""
    for index, change in enumerate(changes):
        if index == fail_after:
            raise ServerError("the aggregation stream broke", status=502, service="pendo")
        sent.append(len(api.calls))
        yield change


def test_a_batch_goes_as_soon_as_it_is_full_while_the_diff_goes_on() -> None:
    api, sent = FakePendo(), []
    summary, log = _push(api, _stream(_changes(25), sent, api), batch_size=10)
    assert summary.ok and summary.updated == 25 and summary.planned_batches == 3
    assert sent[10] == 1 and sent[20] == 2  # batch 1 was sent before change 11 was diffed


def test_a_read_that_breaks_midway_reports_what_was_written_and_what_was_not() -> None:
    api, sent = FakePendo(), []
    missing = [Change("gone", {"plan": "pro"}, {}, "missing", ("plan",))]
    summary, log = _push(
        api, _stream(_changes(25), sent, api, fail_after=15), batch_size=10, missing=missing
    )
    assert not summary.ok and "the aggregation stream broke" in summary.read_error
    assert summary.error.startswith("reading the current values broke")
    assert len(api.calls) == 1 and summary.updated == 10
    # The 5 diffed but not sent are logged; the 10 never diffed (nor the unknown missing
    # list, which only a finished read settles) are not: whether they differ is unknown.
    assert [(r.outcome, r.batch) for r in log].count(("not_sent", None)) == 5
    assert summary.not_sent == 5 and not any(r.outcome == "missing" for r in log)


def test_after_a_failed_batch_the_diff_is_read_to_its_end_and_logged_not_sent() -> None:
    api, sent = FakePendo(fail_on={2}), []
    summary, log = _push(api, _stream(_changes(35), sent, api), batch_size=10)
    assert summary.error.startswith("batch 2 of 4 failed")
    assert len(api.calls) == 2 and summary.planned_batches == 4
    outcomes = [r.outcome for r in log]
    assert outcomes.count("updated") == 10 and outcomes.count("unconfirmed") == 10
    assert outcomes.count("not_sent") == 15 == summary.not_sent


# ----- the log is appended behind the sends ----------------------------------------------


def test_the_next_batch_goes_while_the_last_ones_log_is_appended() -> None:
    """A slow append (a busy warehouse) does not hold the next request back; the log is
    whole, in order, once the push returns."""
    api = FakePendo()
    appending = threading.Event()
    release = threading.Event()
    log: list[LogRow] = []
    sent_during_first_append: list[int] = []

    def slow_log(rows: list[LogRow]) -> None:
        if not log:  # the first batch's append waits until the second batch was sent
            appending.set()
            assert release.wait(5)
        log.extend(rows)

    def watch() -> None:
        assert appending.wait(5)
        deadline = time.monotonic() + 5  # a push that waits for the append never sends
        while len(api.calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.001)
        sent_during_first_append.append(len(api.calls))
        release.set()

    watcher = threading.Thread(target=watch)
    watcher.start()
    summary = push_changes(api, _changes(25), [], TYPES, record_log=slow_log, batch_size=10)
    watcher.join()
    assert sent_during_first_append == [2]
    assert summary.ok and summary.updated == 25
    assert [r.batch for r in log] == [1] * 10 + [2] * 10 + [3] * 5


def test_an_append_that_fails_stops_the_push_after_the_next_batch_and_raises() -> None:
    api = FakePendo()
    appended: list[int | None] = []

    def failing_log(rows: list[LogRow]) -> None:
        if rows[0].batch == 2:
            raise OSError("the warehouse is gone")
        appended.append(rows[0].batch)

    with pytest.raises(OSError, match="the warehouse is gone"):
        push_changes(api, _changes(50), [], TYPES, record_log=failing_log, batch_size=10)
    # Batch 2's append failed while batch 3 went out; batch 3's rows were refused and
    # nothing after it was sent.
    assert len(api.calls) == 3
    assert appended == [1]
