"""Polling sensors that stand in for the webhooks Pendo and Amplitude do not have.

One sensor per source family, each evaluating the alert rules of its family
(``analytics_assets/alerts/default_rules.yaml`` unless another file is given):

* ``pendo_activity_sensor``: events, feature/page/track events, new accounts or visitors;
  also re-runs daily partitions whose events changed after they were materialized.
* ``pendo_guides_sensor``: guide events (dismissal and advance rates).
* ``pendo_metadata_sensor``: account and visitor metadata (write-back-owned fields).
* ``amplitude_cohorts_sensor``: the cohort list, and daily active users.
* ``run_failure_alerts_sensor``: failed runs of the daily job.

Every tick makes a bounded number of small calls, one per *plan* (rules reading a source
the same way share a call; see ``alerts/sources.py``), capped per family (``max_calls``):
rules beyond the cap are evaluated on the following ticks, in turn. With the shipped rules
a tick of ``pendo_activity_sensor`` makes 2 aggregations (+1 to name the accounts of alerts
when some fire; +1 per-day totals only when no rule already reads account activity by day),
``pendo_guides_sensor`` 1 (+1 guide list to name guides when alerts fire),
``pendo_metadata_sensor`` 1, ``amplitude_cohorts_sensor`` 1.

State lives in the sensor cursor (``alerts/state.py``): per rule, 48-bit hashes of the
entities in alert, never result sets. A tick that meets throttling (429 after the client's
retries), a 5xx or a network failure returns a ``SkipReason`` that says so and leaves the
cursor as it was; the next tick tries again. A corrupt or old-format cursor is reset with a
logged warning (conditions already holding alert once more), never a crash loop.

``build_sensors(...)`` returns every sensor (this module only assembles them: a tick is
``alerts/runner.py``, failed runs ``alerts/run_failures.py``, shared settings
``alerts/settings.py``); ``evaluate_once(resources, ...)`` ticks each of them outside the
daemon and returns their alerts and cursors (the demo prints them).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg

from analytics_assets.alerts.rules import RuleSet, load_rules
from analytics_assets.alerts.run_failures import RunFailureRunner
from analytics_assets.alerts.runner import AlertSensorRunner
from analytics_assets.alerts.settings import (
    FAMILIES,
    RUN_FAILURE_INTERVAL_SECONDS,
    LateData,
    SensorSettings,
    TickOutcome,
    family_of,
)

logger = logging.getLogger(__name__)

# ------------------------------------------------------------------------------ assembly


def _default_timezone() -> str:
    try:
        from analytics_assets.sync_config import load_sync_config

        return load_sync_config().timezone
    except Exception:  # noqa: BLE001 - a sensor without sync config still works in UTC
        return "UTC"


def _default_app_ids() -> Any:
    try:
        from analytics_assets.sync_config import load_sync_config

        return load_sync_config().pendo_app_ids
    except Exception:  # noqa: BLE001
        return "*"


def make_settings(
    rules: RuleSet | str | Path | None = None,
    *,
    late_data_job: Any = None,
    late_data_asset_key: dg.AssetKey | Sequence[str] | None = None,
    late_data_assets: Sequence[dg.AssetKey] | None = None,
    late_data_lookback_days: int = 7,
    pendo_timezone: str | None = None,
    amplitude_timezone: str = "UTC",
    clock: Callable[[], datetime] | None = None,
    **overrides: Any,
) -> SensorSettings:
    """Settings for the sensors. ``rules``: a RuleSet, a YAML path, or None for the file
    named by ``ANALYTICS_ALERTS_RULES``, else the shipped ``default_rules.yaml``. A bad file
    stops the code location from loading, with every problem's line and reason."""
    if rules is None:
        rules = os.environ.get("ANALYTICS_ALERTS_RULES") or None
    ruleset = rules if isinstance(rules, RuleSet) else load_rules(rules)
    late = None
    if late_data_job is not None or late_data_asset_key is not None:
        key = late_data_asset_key or LateData.asset_key
        late = LateData(
            job=late_data_job,
            asset_key=key if isinstance(key, dg.AssetKey) else dg.AssetKey(list(key)),
            lookback_days=late_data_lookback_days,
            asset_selection=late_data_assets,
        )
    for name in {r.sensor for r in ruleset.rules if r.sensor}:
        if name not in FAMILIES:
            raise ValueError(f"unknown sensor {name!r} in the rules; use one of {list(FAMILIES)}")
    return SensorSettings(
        rules=ruleset,
        pendo_timezone=pendo_timezone or _default_timezone(),
        amplitude_timezone=amplitude_timezone,
        app_ids=overrides.pop("app_ids", None) or _default_app_ids(),
        clock=clock or (lambda: datetime.now(UTC)),
        late_data=late,
        **overrides,
    )


def build_alert_runners(settings: SensorSettings) -> dict[str, AlertSensorRunner]:
    """One runner per family that has rules (or late data to watch)."""
    runners = {}
    for family in FAMILIES.values():
        runner = AlertSensorRunner(family, settings)
        if runner.rules() or runner.late_data() is not None:
            runners[runner.name] = runner
    return runners


def _resource_keys(settings: SensorSettings, *systems: str) -> set[str]:
    keys = {settings.pendo_key if s == "pendo" else settings.amplitude_key for s in systems}
    if settings.warehouse_key:
        keys.add(settings.warehouse_key)
    return keys


def _sensor_for(runner: AlertSensorRunner) -> dg.SensorDefinition:
    settings = runner.settings
    late = runner.late_data()
    target: dict[str, Any] = {}
    if late is not None and late.job is not None:
        target = {"job_name": late.job} if isinstance(late.job, str) else {"jobs": [late.job]}

    @dg.sensor(
        name=runner.name,
        description=runner.description(),
        minimum_interval_seconds=settings.minimum_interval_seconds,
        default_status=settings.default_status,
        required_resource_keys=_resource_keys(settings, runner.family.system),
        tags={"analytics_assets/family": runner.family.name},
        **target,
    )
    def _sensor(
        context: dg.SensorEvaluationContext, **_resources: Any
    ) -> dg.SensorResult | dg.SkipReason:
        # Resources are read from the context; direct invocation (build_sensor_context in
        # tests and the demo) also passes them as keywords, which are ignored here.
        return runner.tick(context).result()

    return _sensor


def build_sensors(
    rules: RuleSet | str | Path | None = None,
    *,
    late_data_job: Any = None,
    late_data_asset_key: dg.AssetKey | Sequence[str] | None = None,
    late_data_assets: Sequence[dg.AssetKey] | None = None,
    **options: Any,
) -> list[dg.SensorDefinition]:
    """Every alert sensor, plus the run-failure sensor, for ``Definitions(sensors=...)``.

    ``rules``: a rule file (default: the shipped ``default_rules.yaml``). ``late_data_job``:
    the daily job (name or definition) to re-run for days whose Pendo events changed after
    materialization; None detects and logs only. ``late_data_assets`` limits those runs to
    some assets of the job (e.g. only the Pendo ones). Other options: see ``SensorSettings``
    (resource keys, time zones, ``clock``, timeouts, ``minimum_interval_seconds``,
    ``default_status``).
    """
    settings = make_settings(
        rules,
        late_data_job=late_data_job,
        late_data_asset_key=late_data_asset_key,
        late_data_assets=late_data_assets,
        **options,
    )
    sensors = [_sensor_for(runner) for runner in build_alert_runners(settings).values()]
    if settings.rules.run_failure.enabled:
        sensors.append(build_run_failure_sensor(settings))
    return sensors


def build_run_failure_sensor(settings: SensorSettings) -> dg.SensorDefinition:
    runner = RunFailureRunner(settings)

    @dg.sensor(
        name=runner.name,
        description=runner.description(),
        minimum_interval_seconds=RUN_FAILURE_INTERVAL_SECONDS,
        default_status=settings.default_status,
        required_resource_keys={settings.warehouse_key} if settings.warehouse_key else None,
    )
    def _sensor(context: dg.SensorEvaluationContext, **_resources: Any) -> dg.SensorResult:
        outcome = runner.tick(context)
        return dg.SensorResult(cursor=outcome.cursor, skip_reason=outcome.skip_reason)

    return _sensor


def evaluate_once(
    resources: Mapping[str, Any],
    *,
    cursors: Mapping[str, str | None] | None = None,
    instance: dg.DagsterInstance | None = None,
    **options: Any,
) -> dict[str, TickOutcome]:
    """One tick of every alert sensor, outside the daemon (the demo, a script).

    Returns each sensor's outcome (``.alerts``, ``.run_requests``, ``.cursor``); pass the
    cursors back in for the next call, as the daemon would. ``options`` are those of
    ``build_sensors`` (``rules``, ``clock``, ``pendo_timezone``...).
    """
    settings = make_settings(**options)
    runners: dict[str, Any] = dict(build_alert_runners(settings))
    if settings.rules.run_failure.enabled:
        runners[RunFailureRunner.name] = RunFailureRunner(settings)
    instance = instance or dg.DagsterInstance.ephemeral()
    outcomes = {}
    for name, runner in runners.items():
        cursor = (cursors or {}).get(name)
        with dg.build_sensor_context(cursor=cursor, instance=instance,
                                     resources=dict(resources)) as context:  # fmt: skip
            outcome = runner.tick(context)
        if outcome.cursor is None:  # a skipped tick keeps the previous cursor
            outcome.cursor = cursor
        outcomes[name] = outcome
    return outcomes


__all__ = [
    "FAMILIES",
    "AlertSensorRunner",
    "LateData",
    "RunFailureRunner",
    "SensorSettings",
    "TickOutcome",
    "build_alert_runners",
    "build_run_failure_sensor",
    "build_sensors",
    "evaluate_once",
    "family_of",
    "make_settings",
]
