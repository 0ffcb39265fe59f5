"""What the alert sensors share: source families, settings, a tick's outcome, skip texts.

Dagster-aware (run requests, skip reasons), unlike the engine, state and sinks beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import dagster as dg

from analytics_assets.alerts.model import Alert
from analytics_assets.alerts.rules import RuleSet, RuleSpec
from analytics_assets.alerts.sinks import DEFAULT_WEBHOOK_URL_ENV, EnvLookup
from analytics_assets.amplitude.resource import AmplitudeResource
from analytics_assets.http.errors import (
    ApiError,
    RateLimitedError,
    ServerError,
    TransportError,
)
from analytics_assets.partitions import DEFAULT_TIMEZONE
from analytics_assets.pendo.client import AggregationLimitError
from analytics_assets.pendo.pipeline import AppIds
from analytics_assets.pendo.resource import PendoResource
from analytics_assets.warehouse.base import WarehouseResource

MAX_CURSOR_BYTES = 256 * 1024
# The sensors poll rate-limited APIs all day: every 5 minutes is "within minutes" for a CS
# team and costs Pendo ~300 small aggregations a day per sensor.
DEFAULT_INTERVAL_SECONDS = 300
# Failed runs are cheap to look for (the instance's own database): check every minute.
RUN_FAILURE_INTERVAL_SECONDS = 60
# STOPPED by default: a sensor calls external APIs every few minutes and posts to a webhook,
# so turning it on is an operator's decision in the UI (or `default_status: running` in a
# deployment's ChangeAlerts component), not a side effect of `dagster dev` on a laptop.
DEFAULT_STATUS = dg.DefaultSensorStatus.STOPPED


@dataclass(frozen=True)
class Family:
    name: str
    system: str
    max_calls: int
    what: str


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("pendo_activity", "pendo", 3, "Pendo usage (events by account or visitor, "
               "feature/page/track events) and new accounts or visitors"),
        Family("pendo_guides", "pendo", 2, "Pendo guide events (views, advances, dismissals)"),
        Family("pendo_metadata", "pendo", 2, "Pendo account and visitor metadata"),
        Family("amplitude_cohorts", "amplitude", 2, "Amplitude cohorts and active users"),
    )
}  # fmt: skip


def family_of(rule: RuleSpec) -> str:
    """The sensor that evaluates a rule (``sensor:`` in the rule file overrides)."""
    if rule.sensor:
        return rule.sensor
    source = rule.source
    if source.system == "amplitude":
        return "amplitude_cohorts"
    if source.kind == "guideEvents":
        return "pendo_guides"
    if source.kind in ("accounts", "visitors") and rule.condition.type == "field_changed":
        return "pendo_metadata"
    return "pendo_activity"


# ------------------------------------------------------------------------------ settings


class NamedJob(Protocol):
    """A job definition: ``dg.JobDefinition`` or what ``dg.define_asset_job`` returns."""

    @property
    def name(self) -> str: ...


#: What a late-data re-run targets: a job's name, or its definition.
JobLike = str | NamedJob


@dataclass(frozen=True)
class LateData:
    """Re-run daily partitions whose Pendo events changed after they were materialized.

    The daily asset ``asset_key`` records ``metadata_key`` (the events it loaded) in each
    materialization; the sensor compares it with the same total asked of Pendo now.
    ``asset_selection`` limits the re-run to some assets of the job: explicit keys, or an
    ``AssetSelection`` resolved at tick time against the code location's asset graph (the
    sensor's own definitions cannot see the assets other components build); None runs
    the whole job.
    """

    job: JobLike | None  # None: detect and log only
    asset_key: dg.AssetKey = dg.AssetKey(["pendo", "account_daily_usage"])
    metadata_key: str = "pendo_events_total"
    lookback_days: int = 7
    asset_selection: Sequence[dg.AssetKey] | dg.AssetSelection | None = None

    @property
    def job_name(self) -> str | None:
        if self.job is None or isinstance(self.job, str):
            return self.job
        return self.job.name


@dataclass(frozen=True)
class SensorResources:
    """The resources one tick uses, as the sensor's typed parameters received them.

    Any of them may be None: a family's tick only opens the clients its plans need, and
    without a warehouse the table sink is off and write-back references are skipped.
    """

    pendo: PendoResource | None = None
    amplitude: AmplitudeResource | None = None
    warehouse: WarehouseResource | None = None

    @classmethod
    def from_mapping(cls, resources: Mapping[str, Any]) -> SensorResources:
        """From a ``{"pendo": ..., "amplitude": ..., "warehouse": ...}`` mapping (a script's
        ``Definitions.resources``); other keys are ignored."""
        return cls(resources.get("pendo"), resources.get("amplitude"), resources.get("warehouse"))


def env_lookup(environ: Mapping[str, str] | None) -> EnvLookup:
    """How a tick resolves environment variable names (the webhook URL): through
    ``dagster.EnvVar`` at call time, so the value never enters config or logs; a mapping
    stands in for the environment (tests, scripts)."""
    if environ is not None:
        return environ.get
    return lambda name: dg.EnvVar(name).get_value()


@dataclass(frozen=True)
class SensorSettings:
    rules: RuleSet
    pendo_timezone: str = DEFAULT_TIMEZONE
    amplitude_timezone: str = "UTC"
    app_ids: AppIds = "*"
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    # A sensor tick must finish within Dagster's evaluation timeout (60 s unless
    # DAGSTER_SENSOR_GRPC_TIMEOUT_SECONDS says otherwise): few retries, short waits; anything
    # longer is a skipped tick, retried at the next one. A subscription whose 8-day
    # aggregation takes longer (100,000 accounts on the sandbox: 40-90 s) needs both raised.
    api_timeout_seconds: float = 50.0
    api_attempts: int = 2
    api_retry_seconds: float = 10.0
    max_outbox: int = 200
    late_data: LateData | None = None
    # The variable holding the URL of webhook sinks that name neither `url` nor `url_env`;
    # read at each tick, never when the code location loads.
    webhook_url_env_var: str | None = DEFAULT_WEBHOOK_URL_ENV
    # Stands in for the process environment when given (tests); None: dagster.EnvVar.
    environ: Mapping[str, str] | None = None
    minimum_interval_seconds: int = DEFAULT_INTERVAL_SECONDS
    default_status: dg.DefaultSensorStatus = DEFAULT_STATUS

    def lookup_env(self) -> EnvLookup:
        return env_lookup(self.environ)


@dataclass
class TickOutcome:
    """What one tick did: the alerts, run requests and the next cursor (or a skip)."""

    alerts: list[Alert] = field(default_factory=list)
    run_requests: list[dg.RunRequest] = field(default_factory=list)
    cursor: str | None = None
    skip_reason: str | None = None
    api_requests: int = 0
    # per system: requests sent, bytes received, cost units charged (Amplitude's budgets)
    api_stats: dict[str, dict[str, float]] = field(default_factory=dict)
    # The alert tables this tick wrote to: recorded as their assets' materializations.
    asset_events: list[dg.AssetMaterialization] = field(default_factory=list)

    def result(self) -> dg.SensorResult | dg.SkipReason:
        if self.cursor is None:  # nothing to record: the previous cursor stays
            return dg.SkipReason(self.skip_reason or "nothing to do")
        return dg.SensorResult(
            run_requests=self.run_requests,
            cursor=self.cursor,
            skip_reason=None if self.run_requests else self.skip_reason,
            asset_events=self.asset_events,
        )


RETRYABLE = (RateLimitedError, ServerError, TransportError, AggregationLimitError)


def skip_text(service: str, exc: ApiError) -> str:
    # Never the exception text: it is redacted, but a skip reason needs no URL or body.
    status = f"HTTP {exc.status}" if exc.status else "no answer"
    if isinstance(exc, RateLimitedError):
        what = f"{service} is throttling this sensor (429 after {exc.attempts or 1} attempt(s))"
    elif isinstance(exc, AggregationLimitError):
        what = f"{service} refused the aggregation as too big or too slow ({status})"
    elif isinstance(exc, ServerError):
        what = f"{service} failed ({status})"
    else:
        what = f"could not reach {service} ({exc.summary[:120]})"
        if "timed out" in exc.summary.lower() or "timeout" in exc.summary.lower():
            what += (
                "; if this repeats, the aggregation is slower than a sensor tick allows: raise "
                "api_timeout_seconds and DAGSTER_SENSOR_GRPC_TIMEOUT_SECONDS"
            )
    return f"Skipped: {what}. Nothing was evaluated and the cursor is unchanged; next tick retries."
