"""``analytics-assets demo`` and ``dev``: the project run end to end against the sandbox."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg

from analytics_assets.crm_writeback import SAMPLE_CRM_PATH
from analytics_assets.sandbox.config import SandboxConfig
from analytics_assets.sandbox.server import SandboxServer, SandboxUrls


def data_dir() -> Path:
    """Where the demo keeps the warehouse and its Dagster home (``ANALYTICS_ASSETS_DATA_DIR``,
    default ``./data``); ``defs/`` reads the same variable for the warehouse's path."""
    return Path(os.environ.get("ANALYTICS_ASSETS_DATA_DIR") or "data").resolve()


def dagster_home() -> Path:
    """The Dagster home the demo leaves behind for ``dagster dev``."""
    return data_dir() / "dagster_home"


DAGSTER_YAML = """\
# Written by `analytics-assets demo`: local storage, and the concurrency pools that
# keep every run of this instance inside the APIs' limits.
concurrency:
  pools:
    default_limit: 2
  runs:
    max_concurrent_runs: 4
telemetry:
  enabled: false
"""


def sandbox_environment(config: SandboxConfig, urls: SandboxUrls) -> dict[str, str]:
    """Environment variables that point the project's resources at the sandbox."""
    pendo = config.pendo_keys["us"]
    amplitude = config.amplitude_keys["us"]
    return {
        "PENDO_BASE_URL": urls.pendo("us"),
        "PENDO_INTEGRATION_KEY": pendo.read,
        "PENDO_WRITE_INTEGRATION_KEY": pendo.write,
        "PENDO_TIMEZONE": config.pendo_timezone,
        "AMPLITUDE_BASE_URL": urls.amplitude("us"),
        "AMPLITUDE_INGESTION_URL": urls.amplitude("us"),
        "AMPLITUDE_PROFILE_URL": urls.amplitude("us"),
        "AMPLITUDE_API_KEY": amplitude.api_key,
        "AMPLITUDE_SECRET_KEY": amplitude.secret_key,
        "ANALYTICS_ASSETS_CRM_EXPORT": str(SAMPLE_CRM_PATH),
    }


def prepare_dagster_home() -> Path:
    home = dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    return home


def recent_partition_keys(days: int, timezone: str, now: datetime | None = None) -> list[str]:
    """The last ``days`` complete local days, oldest first."""
    today = (now or datetime.now(ZoneInfo(timezone))).astimezone(ZoneInfo(timezone)).date()
    return [(today - timedelta(days=n)).isoformat() for n in range(days, 0, -1)]


def _print_tables(warehouse_file: Path) -> None:
    import duckdb

    with duckdb.connect(str(warehouse_file), read_only=True) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "ORDER BY table_schema, table_name"
        ).fetchall()
        print(f"\nWarehouse {warehouse_file} holds {len(tables)} tables:")
        for schema, name in tables:
            rows = conn.execute(f'SELECT count(*) FROM "{schema}"."{name}"').fetchone()[0]
            print(f"  {schema}.{name:<32} {rows:>10,} rows")


def run_demo(config: SandboxConfig, days: int = 3) -> int:
    """Start the sandbox, materialize the last few days of everything, and print it all."""
    home = prepare_dagster_home()
    # The Amplitude project's days must be the subscription's days for figures to agree.
    config.amplitude_timezone = config.pendo_timezone
    print(f"Data directory: {data_dir()}")
    with SandboxServer(config) as sandbox:
        print(
            f"Sandbox started on {sandbox.urls.base} (seed {config.seed}, scale {config.scale:g})"
        )
        os.environ.update(sandbox_environment(config, sandbox.urls))
        os.environ["DAGSTER_HOME"] = str(home)
        # A day is complete once Amplitude has exported its last hour (the export lags
        # ingestion): pick the last days complete by then, never a day cut short.
        lag = timedelta(seconds=config.amplitude_limits.export_lag_seconds) + timedelta(hours=1)
        return _run_steps(days, complete_at=datetime.now(UTC) - lag)


# The console logger at WARNING: the demo prints its own summary of each run.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _report(result: dg.ExecuteInProcessResult, label: str) -> bool:
    materialized = result.get_asset_materialization_events()
    checks = result.get_asset_check_evaluations()
    failed_checks = [c for c in checks if not c.passed]
    status = "ok" if result.success else "FAILED"
    print(
        f"  {label:<34} {status:<6} {len(materialized):>3} materializations, "
        f"{len(checks) - len(failed_checks)}/{len(checks)} checks passed"
    )
    for check in failed_checks:
        print(f"      check failed: {check.asset_key.to_user_string()} {check.check_name}")
    return result.success


def _writeback(defs: dg.Definitions, instance: dg.DagsterInstance) -> bool:
    """Push the sample CRM export into Pendo and print what changed and what was set aside."""
    from analytics_assets.crm_writeback import run_report

    print(f"\nCRM write-back from {SAMPLE_CRM_PATH.name}:")
    job = defs.resolve_job_def("crm_account_metadata_push")
    result = job.execute_in_process(
        instance=instance, raise_on_error=False, run_config={"crm_path": str(SAMPLE_CRM_PATH)}
    )
    print(run_report(defs.resources["warehouse"], result.run_id))
    return result.success


def _last_weekday_start(timezone: str) -> datetime:
    """Local midnight of the last complete weekday: the day the activity rule judges."""
    tz = ZoneInfo(timezone)
    day = datetime.now(tz).date() - timedelta(days=1)
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=tz)


def _stage_changes(timezone: str) -> list[str]:
    """Changes the sensors should notice, staged through the sandbox's control API (the
    real services change on their own; the sandbox is told to)."""
    import httpx

    from analytics_assets.amplitude.client import AmplitudeClient
    from analytics_assets.pendo.client import MetadataRecord, PendoClient
    from analytics_assets.pendo.pipeline import Agg, Expr, Pipeline, Source, TimeSeries

    base = os.environ["PENDO_BASE_URL"]
    control = f"{base}/_sandbox"
    judged = _last_weekday_start(timezone)
    judged_ms = int(judged.timestamp() * 1000)
    now = datetime.now(ZoneInfo(timezone))
    staged = []
    reader = PendoClient(os.environ["PENDO_INTEGRATION_KEY"], base_url=base)
    with httpx.Client(timeout=60) as http, reader:
        # The account with the most events over the week before the judged day goes quiet.
        week = TimeSeries.day_range(judged_ms - 7 * 86_400_000, count=7)
        busiest = next(
            reader.aggregate(
                Pipeline(Source.events(time_series=week, app_ids="*"))
                .filter(Expr.ne("accountId", ""))
                .group(by=["accountId"], fields={"n": Agg.sum("numEvents")})
                .sort("-n")
                .limit(1)
            )
        )["accountId"]
        http.post(
            f"{control}/stage",
            json={"action": "account_quiet", "account_id": busiest, "from": judged.isoformat()},
        ).raise_for_status()
        staged.append(f"{busiest} went quiet from {judged.date()}")
        # The most viewed guide of the last 24 hours is suddenly dismissed by 95%.
        since = now - timedelta(hours=24)
        hours = TimeSeries.hour_range(
            int(since.timestamp() * 1000), int(now.timestamp() * 1000) + 3_600_000
        )
        views = list(
            reader.aggregate(
                Pipeline(Source.guide_events(time_series=hours, app_ids="*"))
                .filter(Expr.eq("type", "guideSeen"))
                # A view is a visitor seeing the guide; multi-step guides log a seen per step.
                .group(by=["guideId"], fields={"views": Agg.count("visitorId")})
                .sort("-views")
                .limit(1)
            )
        )
        if views:
            guide, seen = views[0]["guideId"], views[0]["views"]
            http.post(
                f"{control}/stage",
                json={
                    "action": "guide_dismissals",
                    "guide_id": guide,
                    "rate": 0.95,
                    "from": since.isoformat(),
                },
            ).raise_for_status()
            staged.append(
                f"guide {guide} ({seen} views in 24 h) is dismissed by 95% of viewers"
                + ("" if seen >= 20 else "; the rule wants 20 views, so it stays quiet")
            )
        created = http.post(
            f"{control}/pendo/accounts", json={"name": "Brand New Co", "visitors": 2}
        ).json()
        staged.append(f"a new account {created['account_id']} (Brand New Co) appeared")
    with PendoClient(os.environ["PENDO_WRITE_INTEGRATION_KEY"], base_url=base) as pendo:
        list(pendo.update_metadata("account", [MetadataRecord("account-000001", {"plan": "free"})]))
    staged.append("someone set account-000001's plan to 'free' in Pendo, unlike the CRM")
    with AmplitudeClient(
        os.environ["AMPLITUDE_API_KEY"],
        os.environ["AMPLITUDE_SECRET_KEY"],
        base_url=os.environ["AMPLITUDE_BASE_URL"],
    ) as amplitude:
        cohort = next(
            c for c in amplitude.list_cohorts() if c.get("size") and not c.get("archived")
        )
        amplitude.update_cohort_membership(
            cohort["id"], add=[f"visitor-{i:07d}" for i in range(40)], id_type="BY_NAME"
        )
    staged.append(f"40 users were added to the cohort '{cohort['name']}'")
    return staged


def _alerts(resources: dict, instance: dg.DagsterInstance, timezone: str) -> bool:
    """One tick of every sensor, the staged changes, a second tick: print what alerted."""
    from analytics_assets.alerts.sensors import evaluate_once

    print("\nPolling sensors (one tick each, in place of webhooks):")
    first = evaluate_once(resources, instance=instance, pendo_timezone=timezone)
    held = sum(len(o.alerts) for o in first.values())
    print(f"  first tick: {held} alerts for conditions that already held; cursors saved")
    for change in _stage_changes(timezone):
        print(f"  staged: {change}")
    second = evaluate_once(
        resources,
        instance=instance,
        pendo_timezone=timezone,
        cursors={name: o.cursor for name, o in first.items()},
    )
    alerts = [a for o in second.values() for a in o.alerts]
    print(f"  second tick: {len(alerts)} alerts (also kept in analytics.alerts):")
    for alert in alerts:
        name = f" {alert.entity_name}" if alert.entity_name else ""
        print(f"    [{alert.severity}] {alert.rule} {alert.entity_id}{name}: {alert.message}")
    for name, outcome in second.items():
        print(f"    {name}: {outcome.skip_reason or 'ok'}")
    return True


def _run_steps(days: int, complete_at: datetime) -> int:
    """Materialize snapshots, the last ``days`` daily partitions, then the health view."""
    from analytics_assets import definitions
    from analytics_assets.naming import CADENCE_TAG, DAILY

    # Dagster logs every event at DEBUG; the demo prints its own summary instead, and
    # warnings and step failures still show.
    logging.getLogger("dagster").setLevel(logging.WARNING)
    instance = dg.DagsterInstance.get()
    # Concurrency pools: at most this many steps call each API at once, across runs.
    for pool, slots in (("pendo_api", 2), ("amplitude_api", 2)):
        instance.event_log_storage.set_concurrency_slots(pool, slots)
    defs = definitions.defs
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    resources = dict(defs.resources or {})
    health = dg.AssetKey(["analytics", "account_health"])
    daily = [a.key for a in assets if a.tags_by_key[a.key].get(CADENCE_TAG) == DAILY]
    snapshots = [a.key for a in assets if a.key not in daily and a.key != health]
    timezone = os.environ.get("PENDO_TIMEZONE") or "America/New_York"
    keys = recent_partition_keys(days, timezone, now=complete_at)
    ok = True
    print(
        f"\nMaterializing {len(snapshots)} snapshot assets, then {len(daily)} daily assets "
        f"for {', '.join(keys)} ({timezone}):"
    )
    run = partial(
        dg.materialize,
        assets,
        instance=instance,
        resources=resources,
        raise_on_error=False,
        run_config=QUIET,
    )
    ok &= _report(run(selection=snapshots), "catalogs and snapshots")
    for key in keys:
        ok &= _report(run(selection=daily, partition_key=key), f"daily partition {key}")
    ok &= _report(run(selection=[health]), "account health")
    ok &= _writeback(defs, instance)
    ok &= _alerts(resources, instance, timezone)
    _print_tables(Path(resources["warehouse"].database))
    print(
        f"\nDagster home: {dagster_home()} -- run `DAGSTER_HOME={dagster_home()} dagster dev` "
        "(or `analytics-assets dev`) to see these runs in the UI."
    )
    return 0 if ok else 1


def run_dev(config: SandboxConfig, webserver_port: int = 3000) -> int:
    """Start the sandbox on a fixed port and ``dagster dev`` against it, until Ctrl+C."""
    home = prepare_dagster_home()
    with SandboxServer(config) as sandbox:
        env = {**os.environ, **sandbox_environment(config, sandbox.urls), "DAGSTER_HOME": str(home)}
        print(f"Sandbox on {sandbox.urls.base}; Dagster UI on http://127.0.0.1:{webserver_port}")
        workspace = Path(__file__).resolve().parent.parent / "workspace.yaml"
        cmd = [sys.executable, "-m", "dagster", "dev", "-p", str(webserver_port)]
        if workspace.exists():
            cmd += ["-w", str(workspace)]
        else:
            cmd += ["-m", "analytics_assets.definitions"]
        process = subprocess.Popen(cmd, env=env)
        try:
            while process.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            process.terminate()
            process.wait(timeout=30)
        return process.returncode or 0
