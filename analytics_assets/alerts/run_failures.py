"""Alerts for failed runs of the daily job, through the same sinks as the other alerts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from analytics_assets.alerts.model import Alert, utc_iso
from analytics_assets.alerts.settings import (
    RUN_FAILURE_INTERVAL_SECONDS,
    SensorResources,
    SensorSettings,
    TickOutcome,
)
from analytics_assets.alerts.sinks import build_sinks, dispatch
from analytics_assets.alerts.state import dump_state, load_state


class RunFailureRunner:
    """Alerts for failed runs of the watched jobs, through the same sinks.

    A polling sensor over the instance's run records rather than ``dg.run_failure_sensor``:
    the latter's cursor is Dagster's own and moves on even when the function raises, so an
    alert whose sink failed could not wait for a retry; here undelivered alerts stay in the
    cursor's outbox like every other alert.
    """

    name = "run_failure_alerts_sensor"

    def __init__(self, settings: SensorSettings, lookback_hours: float = 24.0) -> None:
        self.settings = settings
        self.lookback_hours = lookback_hours

    @property
    def jobs(self) -> list[str]:
        return list(self.settings.rules.run_failure.jobs)

    def description(self) -> str:
        return (
            f"Alerts when a run of {', '.join(self.jobs)} fails (checked every "
            f"{RUN_FAILURE_INTERVAL_SECONDS} s in Dagster's own run storage; no API calls), "
            "through the same sinks as the other alerts."
        )

    def tick(self, context: Any, resources: SensorResources | None = None) -> TickOutcome:
        """One look at the run records; ``resources.warehouse`` feeds the table sink."""
        resources = resources or SensorResources()
        state, reset = load_state(context.cursor)
        if reset:
            context.log.warning(f"{self.name}: cursor reset ({reset})")
        now = datetime.now(UTC)  # run records carry real time, whatever the sensors' clock
        since = float(state.extra.get("since") or (now - timedelta(hours=self.lookback_hours))
                      .timestamp())  # fmt: skip
        seen = set(state.extra.get("seen") or [])
        records = context.instance.get_run_records(
            dg.RunsFilter(
                statuses=[dg.DagsterRunStatus.FAILURE],
                updated_after=datetime.fromtimestamp(since - 1, UTC),
            ),
            limit=200,
            order_by="update_timestamp",
            ascending=True,
        )
        alerts = []
        newest = since
        for record in records:
            run = record.dagster_run
            stamp = record.update_timestamp.timestamp()
            newest = max(newest, stamp)
            if run.run_id in seen or run.job_name not in self.jobs:
                continue
            seen.add(run.run_id)
            alerts.append(self._alert(context.instance, run, record.update_timestamp))
        state.extra["since"] = newest
        # Ids within the overlap second are enough to avoid a repeat; keep the list short.
        state.extra["seen"] = sorted(seen)[-200:]
        # Built per tick: the webhook URL is looked up now, never when the location loads.
        sinks = build_sinks(self.settings.rules, warehouse=resources.warehouse,
                            environ=self.settings.lookup_env(),
                            url_env=self.settings.webhook_url_env_var)  # fmt: skip
        report = dispatch(alerts, state, sinks, context.log, self.settings.max_outbox)
        return TickOutcome(
            alerts=alerts,
            cursor=dump_state(state),
            skip_reason=f"{len(alerts)} failed run(s) reported ({report.summary()})",
        )

    def _alert(self, instance: dg.DagsterInstance, run: dg.DagsterRun, when: datetime) -> Alert:
        spec = self.settings.rules.run_failure
        partition = run.tags.get("dagster/partition")
        steps = _failed_steps(instance, run.run_id)
        where = f" for partition {partition}" if partition else ""
        detail = "; ".join(f"{step}: {error}" for step, error in steps[:3]) or "see the run's logs"
        return Alert(
            rule="run_failure",
            kind="run_failure",
            severity=spec.severity,
            entity_type="run",
            entity_id=run.run_id,
            entity_name=f"{run.job_name}{' ' + partition if partition else ''}",
            message=f"run {run.run_id[:8]} of {run.job_name}{where} failed: {detail}",
            observed_at=utc_iso(when),
            values={
                "job": run.job_name,
                "partition": partition,
                "failed_steps": [s for s, _ in steps],
            },  # fmt: skip
            condition="run_failure",
            source="dagster",
            sensor=self.name,
            sinks=self.settings.rules.run_failure_sinks(),
        )


def _failed_steps(instance: dg.DagsterInstance, run_id: str) -> list[tuple[str, str]]:
    out = []
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        event = entry.dagster_event
        error = getattr(getattr(event, "event_specific_data", None), "error", None)
        # Dagster wraps the op's exception; its cause is what a person needs to read.
        while getattr(error, "cause", None) is not None:
            error = error.cause
        message = (getattr(error, "message", "") or "").strip().splitlines()
        out.append((event.step_key or "?", (message[0] if message else "failed")[:300]))
    return out
