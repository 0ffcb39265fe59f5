"""What a step spent on an API: the one-line log summary and the materialization metadata.

Each step that talks to an API opens a ``session`` on its resource: when the step ends it
logs one line (requests, retries, seconds waited for budget, 429s met), and
``api_metadata`` returns the same figures as materialization metadata, so the UI shows
what each materialization cost.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg


def api_retry_policy(max_retries: int = 2, delay_seconds: float = 60) -> dg.RetryPolicy | None:
    """Step-level retries of the assets that call an API, on top of the client's
    per-request retries: a step that failed after those (a long outage, a dropped
    aggregation, a pod evicted) runs again after ``delay_seconds``, then twice that, with
    jitter so parallel steps spread out. ``max_retries`` 0: None, a failed step stays
    failed."""
    if max_retries <= 0:
        return None
    return dg.RetryPolicy(
        max_retries=max_retries,
        delay=delay_seconds,
        backoff=dg.Backoff.EXPONENTIAL,
        jitter=dg.Jitter.PLUS_MINUS,
    )


#: The default: twice, after about 1 then 2 minutes.
API_RETRY_POLICY = api_retry_policy()


@contextmanager
def api_session(
    client: Any, context: dg.AssetExecutionContext | dg.OpExecutionContext | None, service: str
) -> Iterator[Any]:
    start = client.stats.snapshot()
    try:
        yield client
    finally:
        spent = client.stats.delta(start)
        if context is not None:
            context.log.info(f"{service} API: {spent.summary()}")


def api_metadata(client: Any, since: Any, service: str) -> dict[str, dg.MetadataValue]:
    """Materialization metadata describing what a step spent on an API: requests and MB
    always; retries, 429s and seconds waited on the limiter only when there were any, so
    the UI plots what happened rather than rows of zeros."""
    spent = client.stats.delta(since)
    metadata = {
        f"{service}_requests": dg.MetadataValue.int(spent.requests_sent),
        f"{service}_mb_received": dg.MetadataValue.float(round(spent.bytes_received / 1e6, 3)),
    }
    if spent.retries:
        metadata[f"{service}_retries"] = dg.MetadataValue.int(spent.retries)
    if spent.throttled:
        metadata[f"{service}_throttled_429"] = dg.MetadataValue.int(spent.throttled)
    if spent.limiter_wait_seconds >= 0.001:
        metadata[f"{service}_limit_wait_seconds"] = dg.MetadataValue.float(
            round(spent.limiter_wait_seconds, 3)
        )
    return metadata
