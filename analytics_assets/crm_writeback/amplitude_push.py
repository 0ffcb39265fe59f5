"""Send the Amplitude changes in capped requests and log each record's outcome.

Groups go first, then users; each request holds one kind (see ``identify.plan_requests``).
Amplitude answers a whole request (``success``, or an error), so a record is ``updated``
only when its request was answered ``success``. A request that fails after the client's
retries stops the run, as for Pendo: its records are logged ``unconfirmed`` (a 5xx or a
dropped connection: Amplitude may hold them) or ``failed`` (a 400: refused, not applied),
the requests after it ``not_sent``, and the job fails. The next run diffs against the log,
so it sends what is unconfirmed or not sent, and only that.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from analytics_assets.amplitude.identify import Identification, plan_requests
from analytics_assets.crm_writeback.amplitude_diff import AmplitudeChange
from analytics_assets.crm_writeback.push import BatchResult, PushSummary, check_batch_size
from analytics_assets.crm_writeback.tables import LogRow, to_json
from analytics_assets.http.errors import ApiError, AuthenticationError, BadRequestError

__all__ = ["IdentifyApi", "amplitude_batches", "push_to_amplitude"]


class IdentifyApi(Protocol):
    """What the push needs of Amplitude (``IdentifyClient`` has it)."""

    def send(self, records: Sequence[Identification]) -> None: ...


def amplitude_batches(
    changes: Sequence[AmplitudeChange], batch_size: int
) -> list[list[AmplitudeChange]]:
    """The requests the changes go in, in order, within Amplitude's per-request limits."""
    check_batch_size(batch_size)
    by_id = {(c.kind, c.record_id): c for c in changes}
    planned = plan_requests([c.identification() for c in changes], batch_size)
    return [[by_id[(i.kind, i.target)] for i in request] for request in planned]


def _rows(
    batch: int | None, changes: Sequence[AmplitudeChange], outcome: str, reason: str | None
) -> list[LogRow]:
    return [
        LogRow(
            batch=batch,
            account_id=c.account_id,
            values_json=to_json(c.values),
            previous_json=to_json(c.previous),
            outcome=outcome,
            reason=c.describe() if reason is None else reason,
            record_kind=c.kind,
            record_id=c.record_id,
            insert_id=c.insert_id,
        )
        for c in changes
    ]


def push_to_amplitude(
    api: IdentifyApi | None,
    changes: Sequence[AmplitudeChange],
    *,
    record_log: Callable[[list[LogRow]], Any],
    batch_size: int = 1000,
    dry_run: bool = False,
    on_batch: Callable[[BatchResult], None] | None = None,
) -> PushSummary:
    """Send ``changes`` (unless ``dry_run``), logging every record's outcome as soon as its
    request was answered, so the log is complete up to the last answered request."""
    planned = amplitude_batches(changes, batch_size)
    summary = PushSummary(planned_batches=len(planned))
    if dry_run:
        for number, batch in enumerate(planned, start=1):
            record_log(_rows(number, batch, "dry_run", None))
            summary.dry_run += len(batch)
        return summary
    if api is None:
        raise ValueError("an Amplitude identify client is needed unless dry_run is set")
    for number, batch in enumerate(planned, start=1):
        result = BatchResult(number=number, size=len(batch))
        started = time.monotonic()
        try:
            api.send([c.identification() for c in batch])
        except AuthenticationError:
            raise  # a wrong key: nothing of this run can land; the op says what to fix
        except ApiError as exc:
            result.seconds = time.monotonic() - started
            # str(exc) is built by the transport from redacted parts: safe to store.
            result.error = str(exc)
            summary.sent += len(batch)
            if isinstance(exc, BadRequestError):
                record_log(_rows(number, batch, "failed", f"Amplitude refused the request: {exc}"))
                result.failed = len(batch)
                summary.failed += len(batch)
                summary.failures.extend((c.record_id, str(exc)) for c in batch)
            else:
                why = f"the request failed, Amplitude may not have applied it: {exc}"
                record_log(_rows(number, batch, "unconfirmed", why))
                result.unconfirmed = len(batch)
                summary.unconfirmed += len(batch)
            summary.batches.append(result)
            if on_batch is not None:
                on_batch(result)
            summary.error = f"batch {number} of {len(planned)} failed: {exc}"
            rest = [c for later in planned[number:] for c in later]
            stop = f"the run stopped at batch {number} after an error; a re-run sends it"
            record_log(_rows(None, rest, "not_sent", stop))
            summary.not_sent = len(rest)
            break
        result.seconds = time.monotonic() - started
        record_log(_rows(number, batch, "updated", None))
        result.updated = len(batch)
        summary.sent += len(batch)
        summary.updated += len(batch)
        summary.batches.append(result)
        if on_batch is not None:
            on_batch(result)
    return summary
