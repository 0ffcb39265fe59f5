"""The Dagster resource that holds Amplitude's keys, settings and shared budgets, and hands
out clients.

Keys are ``EnvVar``s: Dagster resolves them at run time, never writes them into run
config, and the clients redact them from every log line and error.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
from pydantic import Field

from analytics_assets.amplitude.client import AmplitudeClient
from analytics_assets.amplitude.costs import amplitude_budgets
from analytics_assets.api_session import api_session
from analytics_assets.http.limits import Limiter
from analytics_assets.http.shared_budget import is_ledger_url

_BUDGETS: dict[tuple[str, str], dict[str, Limiter]] = {}
_BUDGETS_LOCK = threading.Lock()


def _fingerprint(*parts: str) -> str:
    # Budgets are shared per project; key them by a hash, never the key.
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


MEMORY_LEDGER = "memory"
# Relative to the current directory, as the project's data directory is by default; the
# component or the caller passes another path (nothing here reads the environment).
DEFAULT_BUDGET_LEDGER = "data/amplitude-budgets.sqlite"


def resolve_budget_ledger(ledger: str | None) -> str:
    """The ledger to use: a ``postgresql://`` URL as given (never a path), the ledger file
    (absolute), or ``"memory"``; ``None`` or blank means ``DEFAULT_BUDGET_LEDGER`` under the
    current directory. Another ``scheme://`` raises ``ConfigurationError``."""
    if ledger is None or not ledger.strip():
        return str(Path(DEFAULT_BUDGET_LEDGER).resolve())
    if ledger.strip().lower() == MEMORY_LEDGER:
        return MEMORY_LEDGER
    if is_ledger_url(ledger):
        return ledger.strip()
    return str(Path(ledger).expanduser().resolve())


def shared_amplitude_budgets(
    api_key: str, region: str, window_scale: float, ledger: str | None = None, host: str = ""
) -> dict[str, Limiter]:
    """One set of Amplitude budgets per project, shared by every client of this process and,
    through the ``ledger``, by every other process using it: a SQLite file (default
    ``./data/amplitude-budgets.sqlite``) for the processes of this host, a ``postgresql://``
    URL for those of every host. ``ledger="memory"``: this process only.

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
            "Where the rate budgets shared by every step and run live: a SQLite file for "
            "one host (default: data/amplitude-budgets.sqlite under the current directory), "
            "a postgresql:// URL to share them across hosts (leave the password out: libpq "
            "reads PGPASSWORD or ~/.pgpass), or 'memory' to keep them per process."
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
            with api_session(client, context, "amplitude"):
                yield client
        finally:
            client.close()
