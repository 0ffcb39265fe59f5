"""Send the changes to Pendo in batches and record each record's outcome.

How a re-run resumes (and why it needs no cursor): the diff runs against Pendo's live
values, so every record a previous run got confirmed is now equal in Pendo and is not
sent again; only what was not confirmed (the failed batch, the batches never sent) still
differs and goes out. The log serves the report: a run that follows an interrupted one
says how many records that run confirmed and are now skipped, and how many it left
unconfirmed and are being resent. A record is therefore sent at most once more than
needed: its unconfirmed attempt, then the one that lands.

The run stops at the first batch whose request fails after the client's retries (the
service is down or refusing); that batch is logged ``unconfirmed`` and the batches after
it ``not_sent``, and the job fails so the schedule's owner sees it.

The changes may come from a diff that is still reading Pendo's values (the job's push
does that, see ``overlap``): each batch goes as soon as it is full. If that read breaks
midway, what was sent is logged as usual, what was diffed but not sent ``not_sent``, and
the job fails saying how many CRM records were not compared at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from analytics_assets.crm_writeback.diff import Change
from analytics_assets.crm_writeback.overlap import WriteBehind
from analytics_assets.crm_writeback.tables import LogRow, to_json
from analytics_assets.http.errors import ApiError
from analytics_assets.pendo.client import MAX_BATCH, MetadataRecord

__all__ = [
    "BatchResult",
    "PendoMetadataApi",
    "PushSummary",
    "batches",
    "check_batch_size",
    "push_changes",
]


class PendoMetadataApi(Protocol):
    """What the write-back needs of a Pendo client (``PendoClient`` has it)."""

    def verify_token(self) -> Any: ...

    def get_metadata_schema(self, kind: str) -> dict[str, dict[str, Any]]: ...

    def aggregate(self, pipeline: Any) -> Iterable[dict[str, Any]]: ...

    def update_metadata(
        self,
        kind: str,
        records: Iterable[Any],
        *,
        group: str = "custom",
        create: bool = False,
        batch_size: int = MAX_BATCH,
    ) -> Iterable[Any]: ...


def check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(
            f"batch_size must be a whole number from 1 to {MAX_BATCH}, got {batch_size!r}"
        )
    if batch_size > MAX_BATCH:
        raise ValueError(
            f"batch_size {batch_size} is above Pendo's limit of {MAX_BATCH} records per "
            f"bulk metadata request; set batch_size to {MAX_BATCH} or less"
        )
    return batch_size


def batches(changes: Sequence[Change], batch_size: int) -> Iterator[Sequence[Change]]:
    check_batch_size(batch_size)
    for start in range(0, len(changes), batch_size):
        yield changes[start : start + batch_size]


@dataclass
class BatchResult:
    number: int
    size: int
    updated: int = 0
    failed: int = 0
    missing: int = 0
    unconfirmed: int = 0
    seconds: float = 0.0
    error: str | None = None


@dataclass
class PushSummary:
    batches: list[BatchResult] = field(default_factory=list)
    planned_batches: int = 0
    sent: int = 0
    updated: int = 0
    failed: int = 0
    missing: int = 0
    unconfirmed: int = 0
    not_sent: int = 0
    dry_run: int = 0
    error: str | None = None
    read_error: str | None = None  # the reference values' read broke (a streaming diff)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (account id, reason)

    @property
    def ok(self) -> bool:
        return self.error is None


# ----- reading the client's batch outcome ----------------------------------------------


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def read_outcome(outcome: Any, ids: Sequence[str]) -> tuple[set[str], dict[str, str], set[str]]:
    """(updated ids, failed id -> reason, missing ids) of one batch.

    ``outcome`` is the client's ``BatchOutcome``. Pendo names missing and failed records
    but only counts updated ones; when its count of updated records is below what is left
    after the named ones, which records failed is unknown, so none is counted as written
    (a re-run finds them still different and sends them again).
    """
    missing = {str(i) for i in (_get(outcome, "missing") or ())}
    failed = {
        str(k): str(v) for k, v in (_get(outcome, "failed") or {}).items() if str(k) not in missing
    }
    named = _get(outcome, "updated_ids")
    if named is None:
        named = [i for i in ids if i not in missing and i not in failed]
    updated = {str(i) for i in named}
    raw = _get(outcome, "raw") or {}
    count = raw.get("updated") if isinstance(raw, Mapping) else None
    loose = _get(outcome, "unattributed_errors") or ()
    if (isinstance(count, int) and not isinstance(count, bool) and count < len(updated)) or loose:
        why = f"Pendo confirmed {count} of {len(ids)} records" if count is not None else ""
        why = why or "Pendo reported errors"
        detail = f"; its errors: {list(loose)[:3]}" if loose else ""
        for account in updated:
            failed[account] = f"{why} without naming which failed{detail}"
        updated = set()
    return updated, failed, missing


# ----- the push -------------------------------------------------------------------------


def _log_rows(
    batch: int | None,
    changes: Iterable[Change],
    types: Mapping[str, str],
    outcome: str | Callable[[Change], tuple[str, str | None]],
    reason: str | None = None,
) -> list[LogRow]:
    rows = []
    for change in changes:
        if callable(outcome):
            result, why = outcome(change)
        else:
            result, why = outcome, reason
        rows.append(
            LogRow(
                batch=batch,
                account_id=change.account_id,
                values_json=to_json(change.wire(types)),
                previous_json=to_json(change.previous),
                outcome=result,
                reason=why,
            )
        )
    return rows


def push_changes(
    api: PendoMetadataApi | None,
    changes: Iterable[Change],
    missing: Sequence[Change],
    types: Mapping[str, str],
    *,
    record_log: Callable[[list[LogRow]], Any],
    batch_size: int = MAX_BATCH,
    create: bool = False,
    dry_run: bool = False,
    group: str = "custom",
    on_batch: Callable[[BatchResult], None] | None = None,
) -> PushSummary:
    """Send ``changes`` in batches (unless ``dry_run``), each as soon as it is full, logging
    every record's outcome.

    ``changes`` may be a streaming diff (``DiffStream.changes``, read ahead): a batch goes
    out while the next one is being diffed. ``missing`` is logged once ``changes`` is
    exhausted, as a streaming diff knows it only then. After a failed batch nothing more
    is sent but the diff is read to its end, so every record that differs is logged
    (``not_sent``) and the batch count is whole. An ``ApiError`` raised by ``changes``
    itself (reading the reference values broke) ends the push the same way, with
    ``read_error`` set: what was diffed and not sent is logged ``not_sent``, what was not
    yet diffed is not logged (whether it differs is unknown).

    ``record_log`` receives each batch's log rows once the server answered, in a thread
    while the next batch goes out (``WriteBehind``), so the sends keep the rate's pace. The
    log is complete when this returns or raises; should the process die, it lags the
    answers by at most one batch (a re-run still compares with Pendo's live values, so it
    sends nothing twice that landed). An append that fails raises when the next batch's
    rows are handed over: that batch was sent but goes unlogged, and nothing more is sent.
    """
    check_batch_size(batch_size)
    if api is None and not dry_run:
        raise ValueError("a Pendo client is needed unless dry_run is set")
    with WriteBehind(record_log) as behind:
        return _push_changes(
            api,
            changes,
            missing,
            types,
            record_log=behind.put,
            batch_size=batch_size,
            create=create,
            dry_run=dry_run,
            group=group,
            on_batch=on_batch,
        )


def _push_changes(
    api: PendoMetadataApi | None,
    changes: Iterable[Change],
    missing: Sequence[Change],
    types: Mapping[str, str],
    *,
    record_log: Callable[[list[LogRow]], Any],
    batch_size: int,
    create: bool,
    dry_run: bool,
    group: str,
    on_batch: Callable[[BatchResult], None] | None,
) -> PushSummary:
    summary = PushSummary()
    stopped: list[Change] = []  # differing records not sent after a failure
    failed_at = 0

    def handle(number: int, batch: list[Change]) -> None:
        nonlocal failed_at
        if failed_at or summary.read_error:
            stopped.extend(batch)
            return
        if dry_run:
            record_log(_log_rows(number, batch, types, lambda c: ("dry_run", c.describe())))
            summary.dry_run += len(batch)
            return
        assert api is not None
        result = _send(
            api,
            number,
            batch,
            types,
            group=group,
            create=create,
            batch_size=batch_size,
            record_log=record_log,
            summary=summary,
        )
        summary.batches.append(result)
        if on_batch is not None:
            on_batch(result)
        if result.error is not None:
            failed_at = number
            summary.error = result.error

    batch: list[Change] = []
    number = 0
    try:
        for change in changes:
            batch.append(change)
            if len(batch) == batch_size:
                number += 1
                handle(number, batch)
                batch = []
    except ApiError as exc:
        # str(exc) is built by the client from redacted parts: safe to store.
        summary.read_error = str(exc)
        stopped.extend(batch)
        batch = []
    if batch:
        number += 1
        handle(number, batch)
    summary.planned_batches = number
    why = ""
    if failed_at:
        summary.error = f"batch {failed_at} of {number} failed: {summary.error}"
        why = f"the run stopped at batch {failed_at} after an error; a re-run sends it"
    elif summary.read_error:
        summary.error = f"reading the current values broke: {summary.read_error}"
        why = "the read of the current values broke before this batch went; a re-run sends it"
    if stopped:
        record_log(_log_rows(None, stopped, types, "not_sent", why))
        summary.not_sent = len(stopped)
    if missing and not summary.read_error:  # only a whole read says who is missing
        record_log(
            _log_rows(
                None,
                missing,
                types,
                "missing",
                "account not in Pendo; set create: true to create it",
            )
        )
        summary.missing += len(missing)
    return summary


def _send(
    api: PendoMetadataApi,
    number: int,
    batch: Sequence[Change],
    types: Mapping[str, str],
    *,
    group: str,
    create: bool,
    batch_size: int,
    record_log: Callable[[list[LogRow]], Any],
    summary: PushSummary,
) -> BatchResult:
    records = [MetadataRecord(c.account_id, c.wire(types)) for c in batch]
    result = BatchResult(number=number, size=len(batch))
    started = time.monotonic()
    try:
        # batch_size equals the batch, so the client sends exactly one request.
        outcomes = list(
            api.update_metadata(
                "account", records, group=group, create=create, batch_size=batch_size
            )
        )
    except ApiError as exc:
        # str(exc) is built by the client from redacted parts: safe to store.
        result.seconds = time.monotonic() - started
        result.error = str(exc)
        result.unconfirmed = len(batch)
        summary.unconfirmed += len(batch)
        summary.sent += len(batch)
        record_log(
            _log_rows(
                number,
                batch,
                types,
                "unconfirmed",
                f"the request failed, Pendo may not have applied it: {exc}",
            )
        )
        return result
    result.seconds = time.monotonic() - started
    updated: set[str] = set()
    failed: dict[str, str] = {}
    missing: set[str] = set()
    for outcome in outcomes:
        sent = [str(r.id) for r in (_get(outcome, "records") or records)]
        u, f, m = read_outcome(outcome, sent)
        updated |= u
        failed |= f
        missing |= m

    def fate(change: Change) -> tuple[str, str | None]:
        if change.account_id in missing:
            return "missing", "Pendo has no such account; set create: true to create it"
        if change.account_id in failed:
            return "failed", failed[change.account_id]
        if change.account_id in updated:
            return "updated", change.describe()
        return "failed", "Pendo's answer did not mention this record"

    rows = _log_rows(number, batch, types, fate)
    record_log(rows)
    for row in rows:
        if row.outcome == "updated":
            result.updated += 1
        elif row.outcome == "missing":
            result.missing += 1
        else:
            result.failed += 1
            summary.failures.append((row.account_id, row.reason or ""))
    summary.sent += len(batch)
    summary.updated += result.updated
    summary.failed += result.failed
    summary.missing += result.missing
    return result
