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

Resources are typed sensor parameters: ``pendo: PendoResource``, ``amplitude:
AmplitudeResource`` (only for sensors whose rules read that system) and ``warehouse:
WarehouseResource``, handed to the tick explicitly. ``build_sensors(...)`` returns every sensor
(a tick is ``alerts/runner.py``, failed runs ``alerts/run_failures.py``, shared settings
``alerts/settings.py``; the ``ChangeAlerts`` component in ``alerts/component.py`` builds
them from YAML); ``evaluate_once(resources, ...)`` ticks each of them outside the daemon and
returns their alerts and cursors (the demo prints them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg

from analytics_assets.alerts.rules import RuleSet, TableSinkSpec, load_rules
from analytics_assets.alerts.run_failures import RunFailureRunner
from analytics_assets.alerts.runner import AlertSensorRunner
from analytics_assets.alerts.settings import (
    FAMILIES,
    RUN_FAILURE_INTERVAL_SECONDS,
    JobLike,
    LateData,
    SensorResources,
    SensorSettings,
    TickOutcome,
    family_of,
)
from analytics_assets.alerts.sinks import (
    DEFAULT_WEBHOOK_URL_ENV,
    TABLE_COLUMN_DESCRIPTIONS,
    TABLE_COLUMNS,
)
from analytics_assets.amplitude.resource import AmplitudeResource
from analytics_assets.naming import table_asset_key
from analytics_assets.partitions import DEFAULT_TIMEZONE, check_timezone
from analytics_assets.pendo.pipeline import AppIds, app_ids_param
from analytics_assets.pendo.resource import PendoResource
from analytics_assets.warehouse.asset_kinds import WAREHOUSE_KIND
from analytics_assets.warehouse.base import WarehouseResource

# The resource keys the sensors' parameters are named after (Dagster binds by name).
RESOURCE_KEYS = ("pendo", "amplitude", "warehouse")

SensorFn = Callable[..., dg.SensorResult | dg.SkipReason]

# ------------------------------------------------------------------------------ assembly


def make_settings(
    rules: RuleSet | str | Path | None = None,
    *,
    pendo_timezone: str = DEFAULT_TIMEZONE,
    amplitude_timezone: str = "UTC",
    app_ids: AppIds = "*",
    webhook_url_env_var: str | None = DEFAULT_WEBHOOK_URL_ENV,
    late_data_job: JobLike | None = None,
    late_data_asset_key: dg.AssetKey | Sequence[str] | str | None = None,
    late_data_assets: Sequence[dg.AssetKey] | dg.AssetSelection | None = None,
    late_data_lookback_days: int = 7,
    clock: Callable[[], datetime] | None = None,
    **overrides: Any,
) -> SensorSettings:
    """Settings for the sensors; nothing here reads the environment or a config file.

    ``rules``: a RuleSet, a YAML path, or None for the shipped ``default_rules.yaml``; a bad
    file stops the code location from loading, with every problem's line and reason.
    ``pendo_timezone`` (the subscription's days), ``amplitude_timezone`` and ``app_ids``
    (``"*"``, an int or a list of ints) shape the queries. ``webhook_url_env_var`` names the
    variable a webhook sink without ``url``/``url_env`` reads at each tick. Late data: see
    ``build_sensors``. ``overrides``: other ``SensorSettings`` fields (timeouts,
    ``minimum_interval_seconds``, ``default_status``, ``environ`` for tests).
    """
    ruleset = rules if isinstance(rules, RuleSet) else load_rules(rules)
    check_timezone(pendo_timezone)
    check_timezone(amplitude_timezone)
    app_ids_param("*" if app_ids is None else app_ids)  # a ValueError that says what to pass
    late = None
    if late_data_job is not None or late_data_asset_key is not None:
        key = late_data_asset_key or LateData.asset_key
        if isinstance(key, str):
            key = dg.AssetKey.from_user_string(key)
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
        pendo_timezone=pendo_timezone,
        amplitude_timezone=amplitude_timezone,
        app_ids=app_ids,
        clock=clock or (lambda: datetime.now(UTC)),
        late_data=late,
        webhook_url_env_var=webhook_url_env_var,
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


def _tick_fn(runner: AlertSensorRunner) -> SensorFn:
    """The sensor's function, with a typed parameter per resource its rules need (Dagster
    requires exactly the resources a sensor's parameters name)."""
    systems = runner.systems()
    if systems == {"pendo"}:

        def pendo_tick(
            context: dg.SensorEvaluationContext, pendo: PendoResource, warehouse: WarehouseResource
        ) -> dg.SensorResult | dg.SkipReason:
            return runner.tick(context, SensorResources(pendo=pendo, warehouse=warehouse)).result()

        return pendo_tick
    if systems == {"amplitude"}:

        def amplitude_tick(
            context: dg.SensorEvaluationContext,
            amplitude: AmplitudeResource,
            warehouse: WarehouseResource,
        ) -> dg.SensorResult | dg.SkipReason:
            resources = SensorResources(amplitude=amplitude, warehouse=warehouse)
            return runner.tick(context, resources).result()

        return amplitude_tick

    def both_tick(  # a rule file moved a rule of one system to the other's sensor
        context: dg.SensorEvaluationContext,
        pendo: PendoResource,
        amplitude: AmplitudeResource,
        warehouse: WarehouseResource,
    ) -> dg.SensorResult | dg.SkipReason:
        resources = SensorResources(pendo=pendo, amplitude=amplitude, warehouse=warehouse)
        return runner.tick(context, resources).result()

    return both_tick


def _sensor_for(runner: AlertSensorRunner) -> dg.SensorDefinition:
    settings = runner.settings
    late = runner.late_data()
    target: dict[str, Any] = {}
    if late is not None and late.job is not None:
        target = {"job_name": late.job} if isinstance(late.job, str) else {"jobs": [late.job]}
    return dg.sensor(
        name=runner.name,
        description=runner.description(),
        minimum_interval_seconds=settings.minimum_interval_seconds,
        default_status=settings.default_status,
        tags={"analytics_assets/family": runner.family.name},
        **target,
    )(_tick_fn(runner))


def build_sensors(
    rules: RuleSet | str | Path | None = None, **options: Any
) -> list[dg.SensorDefinition]:
    """Every alert sensor, plus the run-failure sensor, for ``Definitions(sensors=...)``.

    ``rules``: a rule file (default: the shipped ``default_rules.yaml``). ``options`` are
    ``make_settings``'s: ``pendo_timezone``, ``amplitude_timezone``, ``app_ids``,
    ``webhook_url_env_var``, and late data: ``late_data_job`` (the daily job, name or
    definition, to re-run for days whose Pendo events changed after materialization; None
    detects and logs only), ``late_data_asset_key`` (the asset whose materializations record
    ``pendo_events_total``, default ``pendo/account_daily_usage``), ``late_data_assets``
    (which assets of the job those runs materialize: asset keys, or an ``AssetSelection``
    resolved at tick time; None: the whole job); then any ``SensorSettings`` field
    (``clock``, timeouts, ``minimum_interval_seconds``, ``default_status``).

    The sensors take the resources ``pendo``, ``amplitude`` (each only where the rules read
    that system) and ``warehouse``; the webhook URL is read at each tick, never here.
    """
    settings = make_settings(rules, **options)
    sensors = [_sensor_for(runner) for runner in build_alert_runners(settings).values()]
    if settings.rules.run_failure.enabled:
        sensors.append(build_run_failure_sensor(settings))
    return sensors


def alert_table_specs(rules: RuleSet | str | Path | None = None) -> list[dg.AssetSpec]:
    """One asset per alerts table the rules write to, so the table is in the lineage graph
    and each tick that adds alerts records a materialization of it."""
    ruleset = make_settings(rules).rules
    tables = sorted(
        {spec.table for spec in ruleset.sinks.values() if isinstance(spec, TableSinkSpec)}
    )
    return [
        dg.AssetSpec(
            table_asset_key(table),
            description=(
                "Every alert the change-alert sensors raised, one row per alert: rule, "
                "severity, entity (id and name), the condition and values that tripped it. "
                "Appended by the sensors' ticks (each tick that adds alerts is a "
                "materialization); an alert is never stored twice."
            ),
            group_name="alerts",
            kinds={"table", WAREHOUSE_KIND},
            owners=["team:data-engineering"],
            metadata={
                "dagster/table_name": table,
                "dagster/column_schema": dg.TableSchema(
                    columns=[
                        dg.TableColumn(name, kind, description=TABLE_COLUMN_DESCRIPTIONS.get(name))
                        for name, kind in TABLE_COLUMNS
                    ]
                ),
            },
        )
        for table in tables
    ]


def build_run_failure_sensor(settings: SensorSettings) -> dg.SensorDefinition:
    runner = RunFailureRunner(settings)

    @dg.sensor(
        name=runner.name,
        description=runner.description(),
        minimum_interval_seconds=RUN_FAILURE_INTERVAL_SECONDS,
        default_status=settings.default_status,
    )
    def _sensor(
        context: dg.SensorEvaluationContext, warehouse: WarehouseResource
    ) -> dg.SensorResult:
        outcome = runner.tick(context, SensorResources(warehouse=warehouse))
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

    ``resources``: a mapping holding ``pendo``, ``amplitude`` and ``warehouse`` (others are
    ignored), initialized here as Dagster would (``EnvVar`` fields resolved). Returns each
    sensor's outcome (``.alerts``, ``.run_requests``, ``.cursor``); pass the cursors back in
    for the next call, as the daemon would. ``options`` are those of ``build_sensors``.
    """
    settings = make_settings(**options)
    runners: dict[str, Any] = dict(build_alert_runners(settings))
    if settings.rules.run_failure.enabled:
        runners[RunFailureRunner.name] = RunFailureRunner(settings)
    instance = instance or dg.DagsterInstance.ephemeral()
    wanted = {key: resources[key] for key in RESOURCE_KEYS if key in resources}
    outcomes = {}
    with dg.build_resources(wanted, instance=instance) as initialized:
        typed = SensorResources.from_mapping(initialized._asdict())
        for name, runner in runners.items():
            cursor = (cursors or {}).get(name)
            with dg.build_sensor_context(cursor=cursor, instance=instance) as context:
                outcome = runner.tick(context, typed)
            if outcome.cursor is None:  # a skipped tick keeps the previous cursor
                outcome.cursor = cursor
            outcomes[name] = outcome
    return outcomes


__all__ = [
    "FAMILIES",
    "RESOURCE_KEYS",
    "AlertSensorRunner",
    "LateData",
    "RunFailureRunner",
    "SensorResources",
    "SensorSettings",
    "TickOutcome",
    "build_alert_runners",
    "build_run_failure_sensor",
    "build_sensors",
    "evaluate_once",
    "family_of",
    "make_settings",
]
