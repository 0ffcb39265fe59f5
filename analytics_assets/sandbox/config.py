"""Configuration of the sandbox: seed, scale, keys, regions, limits and clock.

Everything a test wants to vary lives here, so a fixture builds one object and
starts a server from it. Keys default to recognisable, clearly fake strings and
can be overridden by flags or ``SANDBOX_*`` environment variables.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

# Pendo serves five regional hosts; the sandbox serves each under its own base URL
# (``/`` for US, ``/<region>`` for the others) with its own data and keys.
PENDO_REGIONS: tuple[str, ...] = ("us", "us1", "eu", "jpn", "au")
# Amplitude serves a US and an EU data centre, each with separate projects.
AMPLITUDE_REGIONS: tuple[str, ...] = ("us", "eu")


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


@dataclass
class PendoKeys:
    """One subscription's integration keys: a read-only one and a read-write one."""

    read: str
    write: str


@dataclass
class AmplitudeKeys:
    """One project's keys: the API key (ingestion, Basic user) and the secret key."""

    api_key: str
    secret_key: str
    project_id: int


def default_pendo_keys() -> dict[str, PendoKeys]:
    keys = {}
    for region in PENDO_REGIONS:
        up = region.upper()
        keys[region] = PendoKeys(
            read=_env(f"SANDBOX_PENDO_{up}_READ_KEY", f"sandbox-pendo-{region}-read-key"),
            write=_env(f"SANDBOX_PENDO_{up}_WRITE_KEY", f"sandbox-pendo-{region}-write-key"),
        )
    return keys


def default_amplitude_keys() -> dict[str, AmplitudeKeys]:
    keys = {}
    for number, region in enumerate(AMPLITUDE_REGIONS):
        up = region.upper()
        keys[region] = AmplitudeKeys(
            api_key=_env(f"SANDBOX_AMPLITUDE_{up}_API_KEY", f"sandbox-amplitude-{region}-api-key"),
            secret_key=_env(
                f"SANDBOX_AMPLITUDE_{up}_SECRET_KEY", f"sandbox-amplitude-{region}-secret-key"
            ),
            project_id=int(_env(f"SANDBOX_AMPLITUDE_{up}_PROJECT_ID", str(187520 + number))),
        )
    return keys


@dataclass
class PendoLimits:
    """The Pendo half's limits. Pendo publishes no rate; these are configurable guesses."""

    # Requests per second per integration key (token bucket); None disables the limit.
    rate: float | None = 100.0
    burst: int = 100
    retry_after_header: bool = True
    # Status for a missing or unknown key: the observed 403 with an empty body, or the
    # brief's 401. The client is tested against both.
    auth_failure_status: int = 403
    # An aggregation running longer than this, or returning more rows, fails as the
    # real service does when it hits its 5-minute / 4 GB cap.
    aggregation_max_seconds: float = 300.0
    aggregation_max_rows: int = 20_000_000
    # Hours of processing lag before an hour's events are visible to aggregations.
    event_lag_hours: float = 0.0


@dataclass
class AmplitudeLimits:
    """The Amplitude half's limits, with windows that tests can shorten."""

    # Every window (hour, 10 minutes, minute) is multiplied by this, so tests and
    # benchmarks exercise an hour's budget in seconds.
    window_scale: float = 1.0
    dashboard_cost_per_hour: int = 108_000
    dashboard_concurrency: int = 5
    user_lookup_concurrency: int = 10
    user_lookup_per_hour: int = 360
    cohort_requests_per_10min: int = 60
    cohort_concurrency: int = 4
    taxonomy_cost_per_hour: int = 7_200
    taxonomy_concurrency: int = 4
    profile_per_minute: int = 600
    ingestion_eps_per_device: float = 30.0
    batch_eps_per_device: float = 1_000.0
    export_max_bytes: int = 4 * 1024**3
    export_time_budget_seconds: float = 180.0
    # Hours between an event's upload and its being exportable and queryable.
    processing_lag_hours: float = 0.0
    # The Export API lags ingestion on top of that: an upload hour is exported only this
    # long after it ends ("data sent between 8-9 PM ... is available via the Export API
    # at 11 PM"; live: hour 11 was 404 at 12:07 and 200 at 14:54). Until then the hour
    # answers the "no data" 404. Dashboard queries do not wait for it. 0 turns it off.
    export_lag_seconds: float = 7200.0
    # User Privacy API: "a rate limit of 1 HTTP request per second", "up to 100
    # amplitude_ids or user_ids" per request and "8 requests running in parallel".
    deletion_requests_per_second: float = 1.0
    deletion_concurrency: int = 8
    retry_after_header: bool = False


@dataclass
class SandboxConfig:
    """Everything that shapes one sandbox instance."""

    seed: int = 42
    scale: float = 1.0
    pendo_timezone: str = "America/New_York"
    amplitude_timezone: str = "UTC"
    host: str = "127.0.0.1"
    port: int = 0
    # A fixed "now" makes every answer reproducible (tests); None follows the wall clock.
    now: datetime | None = None
    # Amplitude events per Pendo event, so benchmarks can grow the export on its own.
    amplitude_events_per_pendo_event: float = 0.6
    pendo_keys: dict[str, PendoKeys] = field(default_factory=default_pendo_keys)
    amplitude_keys: dict[str, AmplitudeKeys] = field(default_factory=default_amplitude_keys)
    pendo_limits: PendoLimits = field(default_factory=PendoLimits)
    amplitude_limits: AmplitudeLimits = field(default_factory=AmplitudeLimits)
    # Fault settings applied from the start (same shape as POST /_sandbox/faults).
    faults: list[dict] = field(default_factory=list)

    def now_ms(self) -> int:
        """Milliseconds since the epoch, frozen when ``now`` is set."""
        if self.now is not None:
            moment = self.now if self.now.tzinfo else self.now.replace(tzinfo=UTC)
            return int(moment.timestamp() * 1000)
        return int(time.time() * 1000)
