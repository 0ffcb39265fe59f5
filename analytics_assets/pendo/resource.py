"""The Dagster resource that holds Pendo's key and settings and hands out clients.

The key is an ``EnvVar``: Dagster resolves it at run time, never writes it into run config,
and the client redacts it from every log line and error.

Pendo publishes no rate limit, so the clients share a
:class:`~analytics_assets.http.limits.RateFinder` that learns it from the 429s. What it
learned lives in the rate budget ledger Amplitude's budgets use (``budget_ledger``), so
every step and run on the host (every host, with Postgres) starts from it and, together,
they pace at it. The same ledger keeps how many days one aggregation of each daily asset
may ask (:meth:`PendoResource.spans`, see :mod:`analytics_assets.pendo.spans`).
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import dagster as dg
from pydantic import Field, field_validator

from analytics_assets.amplitude import resource as amplitude_resource
from analytics_assets.api_session import api_session
from analytics_assets.http.limits import AUTO, MemoryRateStore, RateFinder, RateStore
from analytics_assets.http.shared_budget import LedgerRateStore, MemoryRecords, ledger_at
from analytics_assets.pendo.client import PENDO_HOSTS, PendoClient
from analytics_assets.pendo.spans import AggregationSpans, Records

RATE_RECORD = "pendo.rate"

_MEMORY_STORES: dict[str, MemoryRateStore] = {}
_MEMORY_LOCK = threading.Lock()
_MEMORY_RECORDS = MemoryRecords()


def rate_setting(value: Any) -> float | Literal["auto"]:
    """A rate in requests/s (a finite number above 0), or ``"auto"`` (any case)."""
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not (math.isfinite(number) and number > 0):
        # Text is not echoed: it may be a key pasted into the wrong field.
        got = repr(value) if isinstance(value, int | float) else "something else"
        raise ValueError(f"rate_per_second must be a finite number above 0 or 'auto', got {got}")
    return number


def rate_scope(integration_key: str, region: str, base_url: str | None) -> str:
    """Whose rate it is: a fingerprint of the key and the server (never the key). The
    server, because a limit is the server's: two sandboxes with the same key each keep
    their own."""
    host = (base_url or PENDO_HOSTS.get(region, region)).rstrip("/")
    return hashlib.sha256(f"pendo\0{integration_key}\0{host}".encode()).hexdigest()[:16]


def rate_store(scope: str, ledger: str | None) -> RateStore:
    """The rate's store: a record of the ledger (``None``: Amplitude's default file), or
    with ``"memory"`` one store per scope in this process."""
    where = amplitude_resource.resolve_budget_ledger(ledger)
    if where == amplitude_resource.MEMORY_LEDGER:
        with _MEMORY_LOCK:
            return _MEMORY_STORES.setdefault(scope, MemoryRateStore())
    return LedgerRateStore(where, scope, RATE_RECORD)


def records_at(ledger: str | None) -> Records:
    """The records of the ledger (``None``: Amplitude's default file), or with ``"memory"``
    this process's."""
    where = amplitude_resource.resolve_budget_ledger(ledger)
    return _MEMORY_RECORDS if where == amplitude_resource.MEMORY_LEDGER else ledger_at(where)


class PendoResource(dg.ConfigurableResource):
    """Pendo's REST API v1. The sync and the sensors use a read-only integration key."""

    integration_key: str = Field(description="Integration key; set it with EnvVar.")
    region: str = Field(default="us", description="us, us1, eu, jpn or au.")
    base_url: str | None = Field(
        default=None, description="Explicit base URL (a proxy or the local sandbox)."
    )
    # A number or "auto": Dagster's config has no unions, so the type is Any, checked below.
    rate_per_second: Any = Field(
        default=5.0,
        description=(
            "Most requests per second to send (the limiter finds and holds Pendo's own rate "
            "below it), or 'auto' to start low and find the rate with no number given."
        ),
    )
    budget_ledger: str | None = Field(
        default=None,
        description=(
            "Where the Pendo rate learned from 429s is shared by every step and run: the "
            "ledger of Amplitude's budgets (default: data/amplitude-budgets.sqlite under the "
            "current directory), another SQLite file, a postgresql:// URL to share it across "
            "hosts, or 'memory' to keep it per process."
        ),
    )
    connect_timeout: float = 10.0
    read_timeout: float = Field(default=300.0, description="Aggregations may run 5 minutes.")
    max_attempts: int = 6
    max_retry_time: float = Field(default=300.0, description="Cap on retrying one request.")
    bulk_path: str = Field(
        default="value", description="Bulk write path: 'value' (array body) or 'value/bulk'."
    )

    @field_validator("rate_per_second", mode="before")
    @classmethod
    def _rate(cls, value: Any) -> float | Literal["auto"]:
        return rate_setting(value)

    @field_validator("budget_ledger")
    @classmethod
    def _ledger(cls, value: str | None) -> str | None:
        # Blank means the default, so YAML can pass "{{ env('X', '') }}" through.
        return value if value and value.strip() else None

    def limiter(self) -> RateFinder:
        """A limiter on the rate shared by every client of this key and server (see the
        module's docstring)."""
        scope = rate_scope(self.integration_key, self.region, self.base_url or None)
        return RateFinder(
            self.rate_per_second, store=rate_store(scope, self.budget_ledger), name="pendo"
        )

    def spans(self, asset: str) -> AggregationSpans:
        """How many days one aggregation of ``asset`` asks, learned and shared as the rate is
        (see :mod:`analytics_assets.pendo.spans`)."""
        scope = rate_scope(self.integration_key, self.region, self.base_url or None)
        return AggregationSpans(
            records_at(self.budget_ledger), scope, asset, time_cap=self.read_timeout
        )

    def get_client(
        self,
        *,
        read_timeout: float | None = None,
        max_attempts: int | None = None,
        max_retry_time: float | None = None,
    ) -> PendoClient:
        """A client with this resource's settings; the keyword arguments override its
        timeout and retry settings (the sensors keep each tick short)."""
        limiter = self.limiter()
        return PendoClient(
            self.integration_key,
            region=self.region,
            base_url=self.base_url or None,
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout if read_timeout is None else read_timeout,
            max_attempts=self.max_attempts if max_attempts is None else max_attempts,
            max_retry_time=self.max_retry_time if max_retry_time is None else max_retry_time,
            bulk_path=self.bulk_path,
            limiter=limiter,
        )

    @contextmanager
    def session(
        self, context: dg.AssetExecutionContext | dg.OpExecutionContext | None = None
    ) -> Iterator[PendoClient]:
        """A client for one step; logs the step's one-line API summary when it ends."""
        client = self.get_client()
        try:
            with api_session(client, context, "pendo"):
                yield client
        finally:
            client.close()
