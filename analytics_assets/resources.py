"""Dagster resources that hold the credentials and limits and hand out API clients.

Keys are ``EnvVar``s: Dagster resolves them at run time, never writes them into run
config, and the clients redact them from every log line and error. Each step that
talks to an API opens a ``session``: when the step ends it logs one line (requests,
retries, seconds waited for budget, 429s met) and returns the same figures as
materialization metadata, so the UI shows what each materialization cost.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from analytics_assets.clients.amplitude import AmplitudeClient
from analytics_assets.clients.limits import Limiter, amplitude_budgets
from analytics_assets.clients.pendo import PendoClient
from analytics_assets.settings import amplitude_budget_ledger

MEMORY_LEDGER = "memory"

_BUDGETS: dict[tuple[str, str], dict[str, Limiter]] = {}
_BUDGETS_LOCK = threading.Lock()


def _fingerprint(*parts: str) -> str:
    # Budgets are shared per project; key them by a hash, never the key.
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def resolve_budget_ledger(ledger: str | None) -> str:
    """The ledger file to use (absolute), or ``"memory"``; ``None`` means the default."""
    if ledger is None or not ledger.strip():
        return amplitude_budget_ledger()
    if ledger.strip().lower() == MEMORY_LEDGER:
        return MEMORY_LEDGER
    return str(Path(ledger).expanduser().resolve())


def shared_amplitude_budgets(
    api_key: str, region: str, window_scale: float, ledger: str | None = None, host: str = ""
) -> dict[str, Limiter]:
    """One set of Amplitude budgets per project, shared by every client of this process and,
    through the SQLite ``ledger`` (default ``<data dir>/amplitude-budgets.sqlite``), by every
    process on this host that uses the same file. ``ledger="memory"``: this process only.

    The ledger keys a project by a fingerprint of its key, region, API host (``host``:
    the base URL when one is set) and window scale. The host, because a budget is the
    server's: two servers with the same key (two sandboxes in a test session) each keep
    their own windows. The scale, because tests shrink windows and must not share rows
    with real budgets."""
    where = resolve_budget_ledger(ledger)
    scope = _fingerprint(api_key, region, host.rstrip("/"), repr(window_scale))
    with _BUDGETS_LOCK:
        if (scope, where) not in _BUDGETS:
            _BUDGETS[scope, where] = amplitude_budgets(
                window_scale,
                ledger_path=None if where == MEMORY_LEDGER else where,
                ledger_scope=scope,
            )
        return _BUDGETS[scope, where]


@contextmanager
def _api_session(
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
    """Materialization metadata describing what a step spent on an API."""
    spent = client.stats.delta(since)
    return {
        f"{service}_requests": dg.MetadataValue.int(spent.requests_sent),
        f"{service}_retries": dg.MetadataValue.int(spent.retries),
        f"{service}_throttled_429": dg.MetadataValue.int(spent.throttled),
        f"{service}_limit_wait_seconds": dg.MetadataValue.float(
            round(spent.limiter_wait_seconds, 3)
        ),
        f"{service}_mb_received": dg.MetadataValue.float(round(spent.bytes_received / 1e6, 3)),
    }


class PendoResource(dg.ConfigurableResource):
    """Pendo's REST API v1. The sync and the sensors use a read-only integration key."""

    integration_key: str = Field(description="Integration key; set it with EnvVar.")
    region: str = Field(default="us", description="us, us1, eu, jpn or au.")
    base_url: str | None = Field(
        default=None, description="Explicit base URL (a proxy or the local sandbox)."
    )
    rate_per_second: float = Field(
        default=5.0, description="Requests per second before Pendo answers 429 (adapts down)."
    )
    connect_timeout: float = 10.0
    read_timeout: float = Field(default=300.0, description="Aggregations may run 5 minutes.")
    max_attempts: int = 6
    max_retry_time: float = Field(default=300.0, description="Cap on retrying one request.")
    bulk_path: str = Field(
        default="value", description="Bulk write path: 'value' (array body) or 'value/bulk'."
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
        return PendoClient(
            self.integration_key,
            region=self.region,
            base_url=self.base_url or None,
            rate=self.rate_per_second,
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout if read_timeout is None else read_timeout,
            max_attempts=self.max_attempts if max_attempts is None else max_attempts,
            max_retry_time=self.max_retry_time if max_retry_time is None else max_retry_time,
            bulk_path=self.bulk_path,
        )

    @contextmanager
    def session(
        self, context: dg.AssetExecutionContext | dg.OpExecutionContext | None = None
    ) -> Iterator[PendoClient]:
        """A client for one step; logs the step's one-line API summary when it ends."""
        client = self.get_client()
        try:
            with _api_session(client, context, "pendo"):
                yield client
        finally:
            client.close()


class AmplitudeResource(dg.ConfigurableResource):
    """Amplitude's APIs: Dashboard REST, Export, cohorts, taxonomy, profile, ingestion."""

    api_key: str = Field(description="Project API key; set it with EnvVar.")
    secret_key: str = Field(description="Project secret key; set it with EnvVar.")
    region: str = Field(default="us", description="us or eu.")
    base_url: str | None = Field(
        default=None, description="Explicit base URL of the REST/Export/cohort host."
    )
    ingestion_url: str | None = Field(default=None, description="Explicit ingestion host.")
    profile_url: str | None = Field(default=None, description="Explicit User Profile host.")
    budget_window_scale: float = Field(
        default=1.0, description="Shrinks every budget window (tests and benchmarks only)."
    )
    budget_ledger: str | None = Field(
        default=None,
        description=(
            "SQLite file holding the rate budgets shared by every step and run on this host "
            "(default: AMPLITUDE_BUDGET_LEDGER, else <data dir>/amplitude-budgets.sqlite); "
            "'memory' keeps them per process."
        ),
    )
    connect_timeout: float = 10.0
    read_timeout: float = Field(default=180.0, description="Exports can take minutes.")
    max_attempts: int = 6
    max_retry_time: float = 300.0

    def budgets(self) -> dict[str, Limiter]:
        """This project's budgets, shared by every client, step and run using the ledger."""
        return shared_amplitude_budgets(
            self.api_key,
            self.region,
            self.budget_window_scale,
            self.budget_ledger,
            host=self.base_url or "",
        )

    def get_client(
        self,
        *,
        read_timeout: float | None = None,
        max_attempts: int | None = None,
        max_retry_time: float | None = None,
    ) -> AmplitudeClient:
        """A client with this resource's settings; the keyword arguments override its
        timeout and retry settings (the sensors keep each tick short)."""
        return AmplitudeClient(
            self.api_key,
            self.secret_key,
            region=self.region,
            base_url=self.base_url or None,
            ingestion_url=self.ingestion_url or None,
            profile_url=self.profile_url or None,
            budgets=self.budgets(),
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout if read_timeout is None else read_timeout,
            max_attempts=self.max_attempts if max_attempts is None else max_attempts,
            max_retry_time=self.max_retry_time if max_retry_time is None else max_retry_time,
        )

    @contextmanager
    def session(
        self, context: dg.AssetExecutionContext | dg.OpExecutionContext | None = None
    ) -> Iterator[AmplitudeClient]:
        client = self.get_client()
        try:
            with _api_session(client, context, "amplitude"):
                yield client
        finally:
            client.close()
